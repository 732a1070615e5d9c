"""Checked click / box / mask prompts for one object (SAM 3's interactive path).

One set of rules and messages for :class:`~mmsam3.apis.SAM3Predictor` and
:class:`~mmsam3.deploy.DeployedSAM3`: points inside the image, labels 0 / 1, no NaN, a box with
area inside the image, a mask prompt of the low-resolution size. Nothing is changed on failure:
the callers run these checks before they touch any state.
"""
from typing import Optional, Tuple

import numpy as np

__all__ = ['ClickPrompts', 'check_click_prompts', 'click_round_result']

ClickPrompts = Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]


def _check_points(points, point_labels, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    if points is None or point_labels is None:
        raise ValueError('points and point_labels go together: (N, 2) x y pixels and '
                         '(N,) labels, 1 positive / 0 negative')
    try:
        coords = np.asarray(points, dtype=np.float64)
        labels = np.asarray(point_labels)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'points must be (N, 2) numbers and point_labels (N,) 0 / 1: '
                         f'{exc}') from None
    if coords.ndim == 1 and coords.size == 2:
        coords = coords[None]
    labels = labels.reshape(-1) if labels.ndim <= 1 else labels
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
        raise ValueError(f'points must be (N, 2) x y pixels with N >= 1, got shape '
                         f'{coords.shape}')
    if labels.ndim != 1 or len(labels) != len(coords):
        raise ValueError(f'{len(coords)} points but point_labels of shape {labels.shape}')
    if not np.isfinite(coords).all():
        raise ValueError(f'points contain NaN / inf: {coords.tolist()}')
    if labels.dtype.kind not in 'biuf' or not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f'point_labels must be 1 (positive) or 0 (negative), got {labels.tolist()}; '
            'a box is given with box=[x1, y1, x2, y2] (its corner labels 2 / 3 are internal)')
    outside = (coords[:, 0] < 0) | (coords[:, 0] > w) | (coords[:, 1] < 0) | (coords[:, 1] > h)
    if outside.any():
        raise ValueError(f'points {coords[outside].tolist()} lie outside the {w}x{h} (width x '
                         'height) image given to set_image(); points are x y pixels of that '
                         'image')
    return coords, labels.astype(np.int64)


def _check_box(box, h: int, w: int) -> np.ndarray:
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'box must be [x1, y1, x2, y2] pixels: {exc}') from None
    if b.size != 4:
        raise ValueError(f'box must be one [x1, y1, x2, y2] (4 numbers), got {b.size}')
    if not np.isfinite(b).all():
        raise ValueError(f'box contains NaN / inf: {b.tolist()}')
    if b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f'box {b.tolist()} has no area: it needs x2 > x1 and y2 > y1 '
                         '(x1 y1 x2 y2 pixels)')
    if b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h:
        raise ValueError(f'box {b.tolist()} reaches outside the {w}x{h} (width x height) '
                         'image given to set_image()')
    return b.reshape(2, 2)


def _check_mask(mask_input, low_res_size: Tuple[int, int]) -> np.ndarray:
    import torch
    lh, lw = low_res_size
    m = mask_input.detach().cpu().numpy() if torch.is_tensor(mask_input) else \
        np.asarray(mask_input)
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4 and m.shape[:2] == (1, 1):
        m = m[0]
    if m.ndim != 3 or m.shape != (1, lh, lw):
        raise ValueError(f'mask_input must be the (1, {lh}, {lw}) low-resolution logits of a '
                         f'previous round (out["low_res_logits"][i:i+1]), got shape '
                         f'{np.shape(mask_input)}')
    if m.dtype.kind not in 'biuf' or not np.isfinite(m).all():
        raise ValueError('mask_input must hold finite numbers (logits)')
    return m.astype(np.float32)


def check_click_prompts(points, point_labels, box, mask_input, refine: bool,
                        image_size: Tuple[int, int], low_res_size: Tuple[int, int],
                        previous_logits: Optional[np.ndarray]) -> ClickPrompts:
    """Checked prompts in image pixels.

    Args:
        points, point_labels, box, mask_input, refine: as ``SAM3Predictor.predict``.
        image_size: ``(H, W)`` of the image given to ``set_image``.
        low_res_size: ``(h, w)`` of the low-resolution logits (288 x 288 for SAM 3).
        previous_logits: ``(1, h, w)`` best logits of the previous round (``refine``), or None.

    Returns:
        ``(coords (P, 2) float64 | None, labels (P,) int64 | None, mask (1, h, w) float32 |
        None)``: a box's corners (labels 2, 3) come before the clicks, as in Meta's predictor.

    Raises:
        ValueError: the bad input, with the fix.
    """
    h, w = image_size
    coords = labels = None
    if points is not None or point_labels is not None:
        coords, labels = _check_points(points, point_labels, h, w)
    if box is not None:
        corners = _check_box(box, h, w)
        corner_labels = np.array([2, 3], dtype=np.int64)
        coords = corners if coords is None else np.concatenate([corners, coords])
        labels = corner_labels if labels is None else np.concatenate([corner_labels, labels])
    if mask_input is not None:
        mask = _check_mask(mask_input, low_res_size)
    elif refine and previous_logits is not None:
        mask = np.asarray(previous_logits, dtype=np.float32)
    else:
        mask = None
    if coords is None and mask is None:
        raise ValueError('predict() needs a prompt: points + point_labels, a box, or a '
                         'mask_input (refine=True reuses the previous round\'s logits)')
    return coords, labels, mask


def click_round_result(masks, low_res_logits, iou_pred, object_score_logits):
    """The answer of one click round for one object, as both predictors return it.

    Args:
        masks (Tensor): ``(1, C, H, W)`` bool masks of the original image.
        low_res_logits (Tensor): ``(1, C, h, w)`` logits; clamped to +-32 as Meta's predictor.
        iou_pred (Tensor): ``(1, C)`` predicted IoUs.
        object_score_logits (Tensor): ``(1, 1)``.

    Returns:
        tuple[dict, np.ndarray]: ``dict(masks (C, H, W), scores (C,), low_res_logits (C, h, w),
        object_score)`` and the best candidate's ``(1, h, w)`` logits (the next round's mask
        prompt for ``refine``).
    """
    low = low_res_logits.float().clamp(-32.0, 32.0)[0].cpu().numpy()
    scores = iou_pred.float()[0].cpu().numpy()
    best = int(np.argmax(scores))
    result = dict(masks=masks[0].cpu().numpy(), scores=scores, low_res_logits=low,
                  object_score=float(object_score_logits.float()[0, 0]))
    return result, low[best:best + 1].copy()
