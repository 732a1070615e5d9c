"""The standard click simulator of interactive-segmentation evaluation, and mask IoU helpers.

After each round the next click goes where the prediction is most wrong: the error pixels are
split into false negatives (object pixels the prediction misses) and false positives
(background pixels it covers), each split into 4-connected regions; the largest region is
chosen, and the click is its interior point farthest from the region's boundary (the image
border counts as boundary). A click in a false-negative region is positive (label 1), one in a
false-positive region negative (label 0). The first click (empty prediction) thus lands at the
"centre" of the object's largest part.

Plain numpy / ``scipy.ndimage`` functions, usable without a runner (the
:class:`~mmsam3.evaluation.metrics.InteractiveClickMetric` reads the per-click IoUs the model's
``predict`` computes with them).
"""
from typing import NamedTuple, Optional

import numpy as np
from scipy import ndimage

__all__ = ['Click', 'next_click', 'mask_iou_single', 'masks_iou']


class Click(NamedTuple):
    """One simulated click: ``x`` (column), ``y`` (row) in mask pixels, ``is_positive``."""
    x: int
    y: int
    is_positive: bool

    @property
    def label(self) -> int:
        """SAM's point label: 1 positive, 0 negative."""
        return int(self.is_positive)


def _as_bool_mask(mask, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'{name} must be a 2-D (H, W) mask, got shape {mask.shape}')
    return mask.astype(bool, copy=False)


def _largest_region(error: np.ndarray):
    """(area, region mask) of the largest 4-connected region of ``error``; (0, None) if none."""
    labels, num = ndimage.label(error)
    if num == 0:
        return 0, None
    areas = np.bincount(labels.ravel())[1:]
    best = int(np.argmax(areas))  # ties: the region met first in raster order
    return int(areas[best]), labels == best + 1


def _farthest_from_boundary(region: np.ndarray):
    """(row, col) of the region pixel farthest from its boundary (image border included)."""
    padded = np.pad(region, 1, mode='constant', constant_values=False)
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    return np.unravel_index(int(np.argmax(dist)), dist.shape)  # ties: first in raster order


def next_click(pred_mask, gt_mask) -> Optional[Click]:
    """The next simulated click for ``pred_mask`` against ``gt_mask`` (both ``(H, W)``, bool or
    0 / 1). Returns None when the prediction is exact (no error pixel).

    The largest false-negative region wins a tie with a false-positive region of the same
    area (a positive click), as the first click must be on the object.
    """
    pred = _as_bool_mask(pred_mask, 'pred_mask')
    gt = _as_bool_mask(gt_mask, 'gt_mask')
    if pred.shape != gt.shape:
        raise ValueError(f'pred_mask {pred.shape} and gt_mask {gt.shape} differ in size; resize '
                         'the prediction to the ground truth first')
    fn_area, fn_region = _largest_region(gt & ~pred)
    fp_area, fp_region = _largest_region(pred & ~gt)
    if fn_area == 0 and fp_area == 0:
        return None
    positive = fn_area >= fp_area
    row, col = _farthest_from_boundary(fn_region if positive else fp_region)
    return Click(x=int(col), y=int(row), is_positive=bool(positive))


def mask_iou_single(pred_mask, gt_mask) -> float:
    """IoU of two ``(H, W)`` masks; two empty masks give 1.0 (nothing to find, nothing found)."""
    pred = _as_bool_mask(pred_mask, 'pred_mask')
    gt = _as_bool_mask(gt_mask, 'gt_mask')
    if pred.shape != gt.shape:
        raise ValueError(f'pred_mask {pred.shape} and gt_mask {gt.shape} differ in size')
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def masks_iou(pred_masks, gt_masks) -> np.ndarray:
    """Row-wise IoU of ``(N, H, W)`` masks (numpy or torch): ``(N,)`` float64, 1.0 where both
    masks are empty."""
    pred = np.asarray(pred_masks.cpu() if hasattr(pred_masks, 'cpu') else pred_masks).astype(bool)
    gt = np.asarray(gt_masks.cpu() if hasattr(gt_masks, 'cpu') else gt_masks).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f'masks_iou needs two (N, H, W) stacks of one shape; got {pred.shape} '
                         f'and {gt.shape}')
    inter = np.logical_and(pred, gt).reshape(len(pred), -1).sum(1)
    union = np.logical_or(pred, gt).reshape(len(pred), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
