"""COCO AP analysis helpers (per-class AP, per-dataset summary, PR curves) on pycocotools' COCOeval.

Used by ``tools/analysis_tools/results_to_tables.py`` and ``tools/analysis_tools/pr_curve.py``.
AP itself is always pycocotools' ``COCOeval`` (standard parameters: IoU 0.50:0.05:0.95, 101 recall
points, ``maxDets`` 1/10/100, as the official SAM 3 evaluation); these functions only convert
inputs and read its ``eval['precision']`` array, shaped
(T iou, R recall, K category, A area, M maxDets).

Inputs:

- ``samples``: data-sample dicts as dumped by ``tools/test.py --out`` (mmdet ``DumpDetResults``):
  ``img_id``, ``pred_instances.{bboxes (N, 4) xyxy original pixels, scores, labels (contiguous),
  masks (optional, list of RLE)}``;
- ``cat_ids``: the ann file's category id of each contiguous label (dataset classes order).
"""
import contextlib
import io
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SUMMARY_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def _np(value) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def cat_ids_for_classes(coco: COCO, classes: Sequence[str]) -> List[int]:
    """Category id of each class name (mmdet's ``CocoMetric`` label -> category mapping)."""
    by_name = {}
    for cat in coco.dataset['categories']:
        by_name.setdefault(cat['name'], cat['id'])
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(f'classes {missing} are not category names of the ann file')
    return [by_name[c] for c in classes]


def samples_to_coco_results(samples: Sequence[dict], cat_ids: Sequence[int],
                            iou_type: str = 'bbox') -> List[dict]:
    """Dumped data samples -> COCO results list (``image_id``, ``category_id``, ``bbox`` xywh,
    ``score``; ``segmentation`` RLE for ``'segm'``)."""
    out = []
    for sample in samples:
        pred = sample['pred_instances']
        bboxes = _np(pred['bboxes']).reshape(-1, 4).astype(np.float64)
        scores = _np(pred['scores']).reshape(-1)
        labels = _np(pred['labels']).reshape(-1).astype(np.int64)
        masks = pred.get('masks')
        if iou_type == 'segm' and masks is None:
            raise ValueError(f"image {sample['img_id']}: segm needs pred_instances.masks")
        for i, (box, score, label) in enumerate(zip(bboxes, scores, labels)):
            if not 0 <= label < len(cat_ids):
                raise ValueError(f"image {sample['img_id']}: label {label} outside the "
                                 f'{len(cat_ids)} classes')
            res = dict(image_id=sample['img_id'], category_id=int(cat_ids[label]),
                       bbox=[float(box[0]), float(box[1]), float(box[2] - box[0]),
                             float(box[3] - box[1])], score=float(score))
            if iou_type == 'segm':
                res['segmentation'] = masks[i]
            out.append(res)
    return out


def run_coco_eval(coco_gt: COCO, results: List[dict], iou_type: str = 'bbox',
                  cat_ids: Optional[Sequence[int]] = None, quiet: bool = True) -> COCOeval:
    """COCOeval (evaluate + accumulate + summarize) of a results list against ``coco_gt``.

    ``cat_ids`` restricts the evaluated categories (default: all of the ann file)."""
    results = [dict(r) for r in results]
    if iou_type == 'segm':
        for r in results:
            r.pop('bbox', None)  # mask area, not box area, for the size ranges (as mmdet)
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream) if quiet else contextlib.nullcontext():
        coco_dt = coco_gt.loadRes(results) if results else COCO()
        if not results:
            coco_dt.dataset = dict(images=[], annotations=[], categories=[])
            coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        if cat_ids is not None:
            coco_eval.params.catIds = list(cat_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def summary(coco_eval: COCOeval) -> Dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl (COCOeval ``stats[:6]``; -1 = undefined)."""
    return {k: float(v) for k, v in zip(SUMMARY_KEYS, coco_eval.stats[:6])}


def _mean_defined(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float('nan')


def per_class_ap(coco_eval: COCOeval) -> List[dict]:
    """One row per evaluated category: ``category``, ``cat_id``, ``num_gt``, ``AP``, ``AP50``,
    ``AP75`` (area all, largest maxDets; NaN when the category has no ground truth)."""
    precision = coco_eval.eval['precision']
    params = coco_eval.params
    iou_50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    iou_75 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.75)))
    gt = coco_eval.cocoGt
    rows = []
    for k, cat_id in enumerate(params.catIds):
        num_gt = len(gt.getAnnIds(catIds=[cat_id], imgIds=params.imgIds, iscrowd=False))
        rows.append(dict(category=gt.cats[cat_id]['name'], cat_id=cat_id, num_gt=num_gt,
                         AP=_mean_defined(precision[:, :, k, 0, -1]),
                         AP50=_mean_defined(precision[iou_50, :, k, 0, -1]),
                         AP75=_mean_defined(precision[iou_75, :, k, 0, -1])))
    return rows


def pr_curve(coco_eval: COCOeval, iou: Optional[float] = 0.5,
             cat_index: Optional[int] = None):
    """(recall (R,), precision (R,)) at IoU ``iou`` (None: mean over the IoU thresholds), area
    all, largest maxDets; one category (``cat_index`` into ``params.catIds``) or the mean over
    the categories with ground truth. Undefined points are NaN."""
    precision = np.asarray(coco_eval.eval['precision'], dtype=np.float64)[..., 0, -1]  # T,R,K
    precision = np.where(precision > -1, precision, np.nan)
    if iou is not None:
        thrs = np.asarray(coco_eval.params.iouThrs)
        t = int(np.argmin(np.abs(thrs - iou)))
        if abs(thrs[t] - iou) > 1e-6:
            raise ValueError(f'IoU {iou} is not one of the COCOeval thresholds {thrs.tolist()}')
        precision = precision[t:t + 1]
    if cat_index is not None:
        precision = precision[:, :, cat_index:cat_index + 1]
    with warnings.catch_warnings():  # all-NaN columns (no ground truth) stay NaN
        warnings.simplefilter('ignore', RuntimeWarning)
        curve = np.nanmean(precision, axis=(0, 2))
    return np.asarray(coco_eval.params.recThrs), curve


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table (cells already formatted as strings)."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)
