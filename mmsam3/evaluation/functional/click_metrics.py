"""Summary figures of interactive segmentation evaluated in clicks.

Input: one row per object, the IoU of the prediction after click 1, 2, ..., N (from the click
simulator, :mod:`.click_simulation`). Output:

- ``mIoU@k``: the mean over objects of the IoU after ``k`` clicks;
- ``NoC@t`` (number of clicks): per object, the first ``k`` whose IoU reaches ``t``, or
  ``max_clicks`` when none of the first ``max_clicks`` does; the mean over objects;
- ``NoF@t`` (failures): how many objects never reach ``t`` within ``max_clicks`` clicks.
"""
from typing import Dict, Sequence

import numpy as np

__all__ = ['number_of_clicks', 'summarize_click_ious']


def _check_ious(ious, max_clicks: int) -> np.ndarray:
    ious = np.asarray(ious, dtype=np.float64)
    if ious.ndim != 2:
        raise ValueError(f'click IoUs must be (num_objects, num_clicks), got shape {ious.shape}')
    if not isinstance(max_clicks, (int, np.integer)) or max_clicks < 1:
        raise ValueError(f'max_clicks must be a positive int, got {max_clicks!r}')
    if ious.shape[1] < max_clicks:
        raise ValueError(f'click IoUs hold {ious.shape[1]} clicks per object but max_clicks is '
                         f'{max_clicks}: simulate at least max_clicks clicks (the model\'s '
                         'test_cfg num_clicks) or lower max_clicks')
    if np.isnan(ious).any():
        raise ValueError('click IoUs contain NaN')
    return ious[:, :max_clicks]


def number_of_clicks(ious, thr: float, max_clicks: int = 20):
    """Per object: (clicks needed to reach IoU ``thr`` (``max_clicks`` if never), reached)."""
    ious = _check_ious(ious, max_clicks)
    reached = ious >= thr
    ok = reached.any(1)
    noc = np.where(ok, reached.argmax(1) + 1, max_clicks)
    return noc, ok


def summarize_click_ious(ious, max_clicks: int = 20, iou_thrs: Sequence[float] = (0.85, 0.9),
                         report_clicks: Sequence[int] = (1, 2, 3, 5, 10, 20)) -> Dict[str, float]:
    """``mIoU@k`` for ``k`` in ``report_clicks`` (those <= ``max_clicks``), ``NoC@t`` and
    ``NoF@t`` for ``t`` in ``iou_thrs`` (keys use ``round(100 t)``: ``NoC@85``), and
    ``num_objects``."""
    ious = _check_ious(ious, max_clicks)
    if len(ious) == 0:
        raise ValueError('no object to summarise: the evaluation data held no instance mask')
    out = {}
    for k in report_clicks:
        if 1 <= k <= max_clicks:
            out[f'mIoU@{k}'] = float(ious[:, k - 1].mean())
    for thr in iou_thrs:
        noc, ok = number_of_clicks(ious, thr, max_clicks)
        tag = f'{round(100 * thr)}'
        out[f'NoC@{tag}'] = float(noc.mean())
        out[f'NoF@{tag}'] = int((~ok).sum())
    out['num_objects'] = int(len(ious))
    return out
