"""Validation of predicted instances before a metric consumes them (shared by mmsam3 metrics).

A malformed prediction (a missing key, NaN, a label outside the dataset...) otherwise surfaces as
a deep traceback inside pycocotools or numpy, far from its cause. :func:`validate_pred_instances`
checks one data sample and raises :class:`MalformedPredictionError` (a ``ValueError``) whose
message starts with ``image <img_id>:`` and says what is wrong.

Input, per data sample (dict or ``DetDataSample``): ``pred_instances`` with

- ``bboxes`` (N, 4) xyxy in original-image pixels (tensor, array or mmdet ``BaseBoxes``);
- ``scores`` (N,);
- ``labels`` (N,) integer, the dataset's contiguous category indices;
- ``masks`` when ``require_masks``: (N, H, W) binary at the original size ``ori_shape``, or a list
  of N COCO RLE dicts of that size.

Checks (all raise): missing ``pred_instances`` or keys, bboxes not (N, 4), lengths that disagree,
NaN / inf scores or boxes, inverted boxes (x2 < x1 or y2 < y1), non-integer labels, labels outside
``[0, num_classes)``, labels that were not prompted (when ``prompted`` is given), masks of the
wrong count or size.

Boxes outside the image (policy): finite boxes reaching outside ``[0, W] x [0, H]`` are *clipped*
to the image when ``clip_boxes=True`` (the default of the metrics). Ground truth lies inside the
image, so clipping only removes the overhang: IoU with any ground truth can only grow and a box
wholly outside stays a (zero-area) false positive. The number of clipped boxes is returned so the
metric can warn once per evaluation rather than once per image. SAM 3's own post-processing
already clips, so a clipped box points at predictions produced elsewhere (an offline json, a
different post-processing). ``clip_boxes=False`` leaves the boxes untouched (the official
evaluators do not clip).
"""
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch


class MalformedPredictionError(ValueError):
    """A data sample's ``pred_instances`` cannot be evaluated; the message names the image."""


class ValidatedPredictions(NamedTuple):
    """Checked predictions of one image (numpy, original-image pixels).

    Attributes:
        bboxes: (N, 4) float64 xyxy, clipped to the image when asked.
        scores: (N,) float64.
        labels: (N,) int64 contiguous category indices.
        masks: ``None`` unless masks were required / present: the input masks unchanged
            ((N, H, W) array or tensor, or a list of N RLE dicts).
        num_clipped: number of boxes that reached outside the image and were clipped.
    """
    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: Optional[Union[np.ndarray, List[dict]]]
    num_clipped: int


def get_field(container, key, default=None):
    """``container[key]`` for dicts and mmengine data elements alike."""
    if isinstance(container, dict):
        return container.get(key, default)
    return getattr(container, key, default)


def has_field(container, key) -> bool:
    return key in container  # dicts and BaseDataElement (__contains__) alike


def to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if hasattr(value, 'tensor'):  # mmdet BaseBoxes
        return value.tensor.detach().cpu().numpy()
    return np.asarray(value)


def sample_image_info(data_sample):
    """``(img_id, (height, width))`` of a data sample; raises when either is missing."""
    img_id = get_field(data_sample, 'img_id')
    if img_id is None:
        raise MalformedPredictionError("data sample without 'img_id'")
    ori_shape = get_field(data_sample, 'ori_shape')
    if ori_shape is None:
        raise MalformedPredictionError(f"image {img_id}: data sample without 'ori_shape'")
    return img_id, (int(ori_shape[0]), int(ori_shape[1]))


def _check_masks(masks, n: int, height: int, width: int, img_id):
    if isinstance(masks, (list, tuple)):
        if len(masks) != n:
            raise MalformedPredictionError(f'image {img_id}: {len(masks)} pred masks for {n} '
                                           'boxes')
        for m in masks:
            if not isinstance(m, dict) or 'counts' not in m or 'size' not in m:
                raise MalformedPredictionError(
                    f'image {img_id}: pred masks given as a list must be COCO RLE dicts with '
                    'size and counts')
            if tuple(int(v) for v in m['size']) != (height, width):
                raise MalformedPredictionError(
                    f'image {img_id}: pred mask RLE size {list(m["size"])} differs from '
                    f'ori_shape {(height, width)} (masks must be at the original image size)')
        return list(masks)
    shape = tuple(masks.shape) if hasattr(masks, 'shape') else np.shape(masks)
    if n == 0 and int(np.prod(shape)) == 0:
        return masks
    if shape != (n, height, width):
        raise MalformedPredictionError(
            f'image {img_id}: pred masks must be (N, H, W) = {(n, height, width)} (original '
            f'image size), got {shape}')
    return masks


def validate_pred_instances(data_sample,
                            num_classes: Optional[int] = None,
                            prompted: Optional[Sequence[int]] = None,
                            require_masks: bool = False,
                            clip_boxes: bool = True) -> ValidatedPredictions:
    """Check (and optionally clip) the ``pred_instances`` of one data sample.

    Args:
        data_sample: dict or ``DetDataSample`` with ``img_id``, ``ori_shape`` and
            ``pred_instances``.
        num_classes: labels must lie in ``[0, num_classes)`` (skipped when None).
        prompted: labels must be among these (the categories prompted on this image).
        require_masks: ``pred_instances.masks`` must exist (segm evaluation).
        clip_boxes: clip boxes to the image (see the module docstring for the policy).

    Returns:
        :class:`ValidatedPredictions`.

    Raises:
        MalformedPredictionError: with a message starting with ``image <img_id>:``.
    """
    img_id, (height, width) = sample_image_info(data_sample)
    pred = get_field(data_sample, 'pred_instances')
    if pred is None:
        raise MalformedPredictionError(f'image {img_id}: data sample has no pred_instances')
    for key in ('bboxes', 'scores', 'labels'):
        if not has_field(pred, key):
            raise MalformedPredictionError(f"image {img_id}: pred_instances lacks '{key}' "
                                           '(needs bboxes, scores and labels)')
    bboxes = to_numpy(get_field(pred, 'bboxes')).astype(np.float64)
    scores = to_numpy(get_field(pred, 'scores')).astype(np.float64).reshape(-1)
    labels = to_numpy(get_field(pred, 'labels')).reshape(-1)
    if bboxes.size == 0:
        bboxes = bboxes.reshape(0, 4)
    if bboxes.ndim != 2 or bboxes.shape[1] != 4:
        raise MalformedPredictionError(
            f'image {img_id}: pred bboxes must be (N, 4) xyxy, got shape {bboxes.shape}')
    n = len(bboxes)
    if len(scores) != n or len(labels) != n:
        raise MalformedPredictionError(
            f'image {img_id}: pred_instances lengths disagree: {n} bboxes, {len(scores)} '
            f'scores, {len(labels)} labels')
    if not np.all(np.isfinite(scores)):
        raise MalformedPredictionError(f'image {img_id}: pred scores contain NaN or inf')
    if not np.all(np.isfinite(bboxes)):
        raise MalformedPredictionError(f'image {img_id}: pred bboxes contain NaN or inf')
    if np.any(bboxes[:, 2] < bboxes[:, 0]) or np.any(bboxes[:, 3] < bboxes[:, 1]):
        raise MalformedPredictionError(
            f'image {img_id}: pred bboxes must be xyxy with x2 >= x1 and y2 >= y1')
    if n and not (np.issubdtype(labels.dtype, np.integer) or
                  (np.issubdtype(labels.dtype, np.number) and np.all(np.isfinite(labels)) and
                   np.all(labels == np.round(labels)))):
        raise MalformedPredictionError(f'image {img_id}: pred labels must be integers, got '
                                       f'dtype {labels.dtype}')
    labels = labels.astype(np.int64)
    if num_classes is not None and n:
        bad = sorted({int(v) for v in labels if not 0 <= v < num_classes})
        if bad:
            raise MalformedPredictionError(
                f'image {img_id}: pred labels {bad} outside the dataset\'s {num_classes} '
                'classes (labels are contiguous category indices)')
    if prompted is not None:
        stray = sorted(set(labels.tolist()) - {int(v) for v in prompted})
        if stray:
            raise MalformedPredictionError(
                f'image {img_id}: predictions with labels {stray} that were not prompted on '
                f'this image (prompted: {list(prompted)})')
    num_clipped = 0
    if clip_boxes and n:
        limits = np.array([width, height, width, height], dtype=np.float64)
        clipped = np.clip(bboxes, 0, limits)
        num_clipped = int(np.any(clipped != bboxes, axis=1).sum())
        bboxes = clipped
    masks = None
    if require_masks:
        if not has_field(pred, 'masks'):
            raise MalformedPredictionError(
                f"image {img_id}: segm evaluation needs pred_instances.masks")
        masks = _check_masks(get_field(pred, 'masks'), n, height, width, img_id)
    elif has_field(pred, 'masks'):
        masks = get_field(pred, 'masks')
    return ValidatedPredictions(bboxes, scores, labels, masks, num_clipped)
