"""COCO AP at one IoU threshold, recomputed on resampled image sets (bootstrap confidence).

An AP measured on 40 validation images moves a lot with which 40 images they are; a ratio of two
such APs moves more. :func:`image_records` runs pycocotools' ``COCOeval.evaluate`` once (one IoU
threshold, area "all", ``max_dets`` detections per image) and keeps, per category and image, the
detection scores, whether each detection matched a ground truth, which are ignored, and how many
ground truths count. :func:`ap_of_sample` then recomputes AP for any multiset of those images
(an image drawn twice counts twice) the way ``COCOeval.accumulate`` does (score order with a
stable sort, precision made monotone, 101 recall points, categories without ground truth left
out of the mean), so the full image set gives exactly ``COCOeval``'s AP at that threshold.
:func:`bootstrap_aps` draws the same image samples for several models (paired), so ratios between
models get an interval too.
"""
import contextlib
import io
from typing import Dict, List, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _coco_from_dict(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def image_records(gt: dict, detections: List[dict], iou_type: str = 'bbox',
                  iou_thr: float = 0.5, max_dets: int = 100) -> dict:
    """Per (category, image) matching at one IoU threshold.

    Args:
        gt: a COCO ground-truth dict (``images``, ``annotations``, ``categories``).
        detections: COCO result dicts (``image_id``, ``category_id``, ``score`` and ``bbox`` or
            ``segmentation``), as mmdet's ``CocoMetric`` writes them with ``outfile_prefix``.

    Returns:
        dict with ``img_ids`` (sorted) and ``cats``: for each category id a list (one entry per
        image, ``None`` where the image has neither ground truth nor detection of it) of
        ``(scores, matched, ignored, num_gt)``.
    """
    coco_gt = _coco_from_dict(gt)
    img_ids = sorted(coco_gt.getImgIds())
    cat_ids = sorted(coco_gt.getCatIds())
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections) if detections else _coco_from_dict(
            dict(images=gt['images'], annotations=[], categories=gt['categories']))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = img_ids
        ev.params.catIds = cat_ids
        ev.params.iouThrs = np.array([iou_thr])
        ev.params.maxDets = [max_dets]
        ev.params.areaRng = [[0 ** 2, 1e5 ** 2]]
        ev.params.areaRngLbl = ['all']
        ev.evaluate()
    cats = {}
    num_imgs = len(img_ids)
    for k, cat in enumerate(cat_ids):
        rows = []
        for i in range(num_imgs):
            e = ev.evalImgs[k * num_imgs + i]  # one area range: index k * A * I + i
            if e is None:
                rows.append(None)
                continue
            scores = np.asarray(e['dtScores'][:max_dets], dtype=np.float64)
            matched = np.asarray(e['dtMatches'][0, :max_dets]) > 0
            ignored = np.asarray(e['dtIgnore'][0, :max_dets]).astype(bool)
            num_gt = int(np.count_nonzero(np.asarray(e['gtIgnore']) == 0))
            rows.append((scores, matched, ignored, num_gt))
        cats[cat] = rows
    return dict(img_ids=img_ids, cats=cats)


def _precision_at_recalls(scores, matched, ignored, num_gt, rec_thrs):
    order = np.argsort(-scores, kind='mergesort')
    matched, ignored = matched[order], ignored[order]
    tps = np.cumsum(np.logical_and(matched, ~ignored)).astype(np.float64)
    fps = np.cumsum(np.logical_and(~matched, ~ignored)).astype(np.float64)
    recall = tps / num_gt
    precision = tps / (fps + tps + np.spacing(1))
    # Monotone from the right, as COCOeval.accumulate makes it.
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    inds = np.searchsorted(recall, rec_thrs, side='left')
    q = np.zeros(len(rec_thrs))
    valid = inds < len(precision)
    q[valid] = precision[inds[valid]]
    return q


def ap_of_sample(records: dict, sample: Sequence[int]) -> float:
    """AP (at the records' IoU threshold) over the images at indices ``sample`` (repeats count)."""
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
    per_cat = []
    for rows in records['cats'].values():
        picked = [rows[i] for i in sample if rows[i] is not None]
        if not picked:
            continue
        num_gt = sum(r[3] for r in picked)
        if num_gt == 0:
            continue
        scores = np.concatenate([r[0] for r in picked])
        matched = np.concatenate([r[1] for r in picked])
        ignored = np.concatenate([r[2] for r in picked])
        per_cat.append(_precision_at_recalls(scores, matched, ignored, num_gt, rec_thrs))
    if not per_cat:
        return float('nan')
    return float(np.mean(per_cat))


def bootstrap_aps(records_by_model: Dict[str, dict], num_samples: int = 1000,
                  seed: int = 0) -> Dict[str, np.ndarray]:
    """AP of each model on ``num_samples`` resampled image sets, the same sets for every model."""
    img_lists = {tuple(r['img_ids']) for r in records_by_model.values()}
    if len(img_lists) != 1:
        raise ValueError('bootstrap_aps: the models were evaluated on different image sets')
    num_imgs = len(next(iter(img_lists)))
    if num_imgs == 0:
        raise ValueError('bootstrap_aps: no validation images')
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, num_imgs, size=(num_samples, num_imgs))
    return {name: np.array([ap_of_sample(rec, s) for s in samples])
            for name, rec in records_by_model.items()}


def interval(values: np.ndarray, level: float = 0.9):
    """The central ``level`` percentile interval of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float('nan'), float('nan')
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
