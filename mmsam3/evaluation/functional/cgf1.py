"""cgF1, SAM 3's concept-level detection metric, as plain numpy functions.

The unit of evaluation is a *pair*: one image together with one prompted noun phrase (in an
mmdet dataset: one category that was prompted on that image). A pair is *positive* when the
phrase has ground truth in the image and *negative* otherwise.

Per pair (inputs of :func:`accumulate_cgf1`):

- ``num_gts`` G: non-crowd ground-truth instances of the phrase (crowd ones take no part at all:
  a detection on a crowd region is a false positive, unlike in COCO AP).
- ``num_dets`` D: detections of the phrase whose score reaches the score threshold.
- ``true_positives`` TP_t (one per IoU threshold t): the detections and ground truths are matched
  one-to-one **once**, by the Hungarian algorithm maximising the summed IoU, and TP_t counts the
  matched couples whose IoU is >= t (:func:`matched_true_positives`). FP_t = D - TP_t,
  FN_t = G - TP_t.

Image-level (IL) outcome of a pair: TP if G > 0 and D > 0, FN if G > 0 and D = 0, FP if G = 0 and
D > 0, TN if G = 0 and D = 0.

Aggregates (counts summed over pairs, per IoU threshold; the epsilons are those of the official
evaluator, kept so that numbers agree to the last digit):

- ``precision``/``recall``/``F1``: micro over all pairs, ``x / (y + 1e-4)`` style.
- ``positive_micro_precision``: TP / (TP + FP counted only on pairs with G > 0 and D > 0), so
  false positives on negative phrases do not enter it (IL_MCC penalises them instead).
- ``positive_micro_F1`` (pmF1): from positive_micro_precision and ``recall`` (whose FNs still
  include positive pairs without any detection).
- ``positive_macro_F1``: mean of the per-pair F1 over pairs with G > 0 and D > 0 (NaN if none).
- ``IL_precision``, ``IL_recall``, ``IL_F1``, ``IL_FPR`` and ``IL_MCC`` (Matthews correlation
  coefficient of the IL confusion matrix), with ``1e-6`` epsilons; independent of the IoU threshold.
- ``cgF1 = positive_micro_F1 * IL_MCC`` (per threshold). Values are fractions; the SAM 3 paper
  prints 100 x these.

:func:`summarize_cgf1` turns the per-threshold arrays into scalars: the mean over all thresholds
(``name``) and the value at 0.5 and 0.75 (``name_50``, ``name_75``). As in the official
summary, entries that are undefined (NaN) are left out of the mean, and a summary with no defined
entry is ``-1``.
"""
from typing import Dict, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
from scipy.optimize import linear_sum_assignment

# Built like pycocotools' Params.iouThrs so that thresholds compare bit-identically.
COCO_IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)

# Official default: a detection counts when its score is >= 0.5.
DEFAULT_SCORE_THR = 0.5

PER_THR_METRICS = ('cgF1', 'precision', 'recall', 'F1', 'positive_macro_F1', 'positive_micro_F1',
                   'positive_micro_precision')
IMAGE_LEVEL_METRICS = ('IL_precision', 'IL_recall', 'IL_F1', 'IL_FPR', 'IL_MCC')

_BOX_EPS = 1e-4
_IL_EPS = 1e-6


def bbox_iou(det_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """IoU between detections and ground truths given as COCO ``[x, y, w, h]`` boxes.

    Uses pycocotools' box IoU (continuous coordinates, no +1 pixel), in float64, which is what
    the official evaluator uses.

    Args:
        det_xywh: (D, 4) boxes.
        gt_xywh: (G, 4) boxes.

    Returns:
        (D, G) float64 IoU matrix.
    """
    det_xywh = np.asarray(det_xywh, dtype=np.float64).reshape(-1, 4)
    gt_xywh = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
    if len(det_xywh) == 0 or len(gt_xywh) == 0:
        return np.zeros((len(det_xywh), len(gt_xywh)), dtype=np.float64)
    ious = mask_util.iou(det_xywh, gt_xywh, np.zeros(len(gt_xywh), dtype=np.uint8))
    return np.asarray(ious, dtype=np.float64).reshape(len(det_xywh), len(gt_xywh))


def mask_iou(det_rles: Sequence[dict], gt_rles: Sequence[dict]) -> np.ndarray:
    """IoU between detection and ground-truth masks given as COCO RLEs of one image size.

    Returns:
        (D, G) float64 IoU matrix.
    """
    det_rles, gt_rles = list(det_rles), list(gt_rles)
    if len(det_rles) == 0 or len(gt_rles) == 0:
        return np.zeros((len(det_rles), len(gt_rles)), dtype=np.float64)
    ious = mask_util.iou(det_rles, gt_rles, np.zeros(len(gt_rles), dtype=np.uint8))
    return np.asarray(ious, dtype=np.float64).reshape(len(det_rles), len(gt_rles))


def matched_true_positives(ious: np.ndarray,
                           iou_thrs: Sequence[float] = COCO_IOU_THRS) -> np.ndarray:
    """True positives of one pair at each IoU threshold.

    The matching is one-to-one and done once for all thresholds, maximising the summed IoU
    (Hungarian algorithm); it is not re-solved per threshold.

    Args:
        ious: (D, G) IoU between the kept detections (score >= threshold, in prediction order)
            and the non-crowd ground truths (in annotation order). Order only matters for ties.
        iou_thrs: (T,) IoU thresholds.

    Returns:
        (T,) int64 number of matched couples with IoU >= each threshold.
    """
    ious = np.asarray(ious, dtype=np.float64)
    iou_thrs = np.asarray(iou_thrs, dtype=np.float64)
    if ious.ndim != 2:
        raise ValueError(f'ious must be a (D, G) matrix, got shape {ious.shape}')
    if ious.size == 0:
        return np.zeros(len(iou_thrs), dtype=np.int64)
    rows, cols = linear_sum_assignment(-ious)
    matched = ious[rows, cols]
    return (matched[None, :] >= iou_thrs[:, None]).sum(axis=1).astype(np.int64)


def _f1(precision, recall, eps):
    return 2 * precision * recall / (precision + recall + eps)


def accumulate_cgf1(num_gts: Sequence[int], num_dets: Sequence[int],
                    true_positives: np.ndarray) -> Dict[str, Union[np.ndarray, float, int]]:
    """Aggregate per-pair counts into the cgF1 family of metrics.

    Args:
        num_gts: (P,) non-crowd ground truths per pair.
        num_dets: (P,) kept detections per pair.
        true_positives: (P, T) matched detections per pair and IoU threshold
            (see :func:`matched_true_positives`).

    Returns:
        dict with (T,) float arrays for :data:`PER_THR_METRICS`, floats for
        :data:`IMAGE_LEVEL_METRICS`, and the integer counts ``TPs``/``FPs``/``FNs`` (T,) and
        ``IL_TP``/``IL_FP``/``IL_TN``/``IL_FN``/``num_pairs``.
    """
    num_gts = np.asarray(num_gts, dtype=np.int64).reshape(-1)
    num_dets = np.asarray(num_dets, dtype=np.int64).reshape(-1)
    tps = np.asarray(true_positives, dtype=np.int64)
    if tps.ndim != 2 or len(tps) != len(num_gts) or len(num_dets) != len(num_gts):
        raise ValueError('num_gts (P,), num_dets (P,) and true_positives (P, T) disagree: '
                         f'{num_gts.shape}, {num_dets.shape}, {tps.shape}')
    if np.any(tps > np.minimum(num_gts, num_dets)[:, None]) or np.any(tps < 0):
        raise ValueError('true_positives must lie in [0, min(num_gts, num_dets)] for each pair')

    positive = num_gts > 0
    detected = num_dets > 0
    fps = num_dets[:, None] - tps  # (P, T)
    fns = num_gts[:, None] - tps

    # Box-level sums; true-negative pairs contribute zeros anyway.
    tp_sum, fp_sum, fn_sum = tps.sum(0), fps.sum(0), fns.sum(0)
    both = positive & detected
    pm_fp_sum = fps[both].sum(0)

    precision = tp_sum / (tp_sum + fp_sum + _BOX_EPS)
    recall = tp_sum / (tp_sum + fn_sum + _BOX_EPS)
    pm_precision = tp_sum / (tp_sum + pm_fp_sum + _BOX_EPS)
    pm_f1 = _f1(pm_precision, recall, _BOX_EPS)

    # Per-pair F1 on the pairs with both ground truth and detections.
    local_p = tps[both] / (tps[both] + fps[both] + _BOX_EPS)
    local_r = tps[both] / (tps[both] + fns[both] + _BOX_EPS)
    local_f1 = _f1(local_p, local_r, _BOX_EPS)
    if both.any():
        macro_f1 = local_f1.sum(0) / both.sum()
    else:
        macro_f1 = np.full(tps.shape[1], np.nan)

    il_tp = int(both.sum())
    il_fn = int((positive & ~detected).sum())
    il_fp = int((~positive & detected).sum())
    il_tn = int((~positive & ~detected).sum())
    il_recall = il_tp / (il_tp + il_fn + _IL_EPS)
    il_precision = il_tp / (il_tp + il_fp + _IL_EPS)
    il_f1 = _f1(il_precision, il_recall, _IL_EPS)
    il_fpr = il_fp / (il_fp + il_tn + _IL_EPS)
    mcc_den = (float(il_tp + il_fp) * float(il_tp + il_fn) * float(il_tn + il_fp) *
               float(il_tn + il_fn))**0.5
    il_mcc = float(il_tp * il_tn - il_fp * il_fn) / (mcc_den + _IL_EPS)

    return dict(
        cgF1=pm_f1 * il_mcc,
        precision=precision,
        recall=recall,
        F1=_f1(precision, recall, _BOX_EPS),
        positive_macro_F1=macro_f1,
        positive_micro_F1=pm_f1,
        positive_micro_precision=pm_precision,
        IL_precision=il_precision,
        IL_recall=il_recall,
        IL_F1=il_f1,
        IL_FPR=il_fpr,
        IL_MCC=il_mcc,
        TPs=tp_sum,
        FPs=fp_sum,
        FNs=fn_sum,
        IL_TP=il_tp,
        IL_FP=il_fp,
        IL_TN=il_tn,
        IL_FN=il_fn,
        num_pairs=int(len(num_gts)),
    )


def summarize_cgf1(
    stats: dict,
    iou_thrs: Sequence[float] = COCO_IOU_THRS,
    report_thrs: Sequence[float] = (0.5, 0.75)
) -> Dict[str, float]:
    """Scalar summary of :func:`accumulate_cgf1`'s output.

    Returns:
        ``{name: mean over thresholds}`` and ``{f'{name}_{round(100 * t)}': value at t}`` for
        each of :data:`PER_THR_METRICS` and each ``t`` in ``report_thrs`` that is one of
        ``iou_thrs``; plus ``{name: value}`` for :data:`IMAGE_LEVEL_METRICS`. Undefined values
        (no defined entry) are ``-1.0``.
    """
    iou_thrs = np.asarray(iou_thrs, dtype=np.float64)

    def _mean(values):
        values = values[values > -1]  # also drops NaN
        return float(np.mean(values)) if len(values) else -1.0

    summary = {}
    for name in PER_THR_METRICS:
        values = np.asarray(stats[name], dtype=np.float64)
        summary[name] = _mean(values)
        for thr in report_thrs:
            idx = np.where(iou_thrs == thr)[0]
            if len(idx):
                summary[f'{name}_{int(round(thr * 100))}'] = _mean(values[idx])
    for name in IMAGE_LEVEL_METRICS:
        summary[name] = float(stats[name])
    return summary


def cgf1_from_ious(pair_ious: Sequence[np.ndarray],
                   iou_thrs: Sequence[float] = COCO_IOU_THRS) -> Dict[str, float]:
    """Convenience: summary metrics from one (D_i, G_i) IoU matrix per pair.

    Each matrix must already hold only the kept detections (score >= threshold) and the
    non-crowd ground truths; an empty (0, G) or (D, 0) matrix stands for a pair without
    detections or without ground truth.
    """
    mats = [np.asarray(m, dtype=np.float64).reshape(np.shape(m)) for m in pair_ious]
    for m in mats:
        if m.ndim != 2:
            raise ValueError(f'each pair needs a (D, G) IoU matrix, got shape {m.shape}')
    tps = np.stack([matched_true_positives(m, iou_thrs) for m in mats]) if mats else \
        np.zeros((0, len(iou_thrs)), dtype=np.int64)
    stats = accumulate_cgf1([m.shape[1] for m in mats], [m.shape[0] for m in mats], tps)
    return summarize_cgf1(stats, iou_thrs)
