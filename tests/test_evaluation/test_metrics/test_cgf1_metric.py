"""CgF1Metric: parity with Meta's ``sam3.eval.cgf1_eval.CGF1Evaluator``, error handling, and
the mmengine Evaluator path.

Fixture: 3 images, 3 classes (ann-file category ids 3/7/11, to exercise the label mapping),
7 (image, prompted class) pairs: 4 positive, 3 negative (one of them has only a crowd box).
For the official evaluator every pair becomes one SA-Co style "image" (``text_input`` = class
name, ``is_instance_exhaustive`` = True, all annotations with category 1).
"""
import copy
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from mmsam3.evaluation.functional import (COCO_IOU_THRS, accumulate_cgf1, cgf1_from_ious,
                                          matched_true_positives, summarize_cgf1)
from mmsam3.evaluation.metrics import CgF1Metric

CLASSES = ('cat', 'dog', 'person')
CAT_IDS = (3, 7, 11)
# img_id -> (height, width, prompt_labels or None for "all classes")
IMAGES = {101: (48, 64, None), 202: (40, 40, [0, 2]), 303: (56, 32, [1, 0])}
# (img_id, label, xywh box, iscrowd)
GT_ANNS = [
    (101, 0, [4, 4, 20, 16], 0),
    (101, 0, [30, 20, 24, 20], 0),
    (101, 1, [10, 28, 16, 14], 0),
    (101, 2, [40, 2, 20, 12], 1),
    (202, 2, [5, 5, 20, 30], 0),
    (202, 1, [22, 8, 14, 12], 0),  # dog is not prompted on 202: never evaluated
    (303, 1, [2, 2, 12, 12], 0),
    (303, 1, [16, 20, 12, 30], 0),
    (303, 1, [4, 30, 10, 10], 0),
]


def _diamond(xywh):
    x, y, w, h = xywh
    return [[x, y + h / 2, x + w / 2, y, x + w, y + h / 2, x + w / 2, y + h]]


def _raster(poly, h, w):
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, h, w))).astype(bool)


def _prompted(img_id):
    labels = IMAGES[img_id][2]
    return list(range(len(CLASSES))) if labels is None else labels


def _coco_gt():
    images = [
        dict(id=i, height=h, width=w, file_name=f'{i}.jpg') for i, (h, w, _) in IMAGES.items()
    ]
    anns = []
    for k, (img_id, label, box, crowd) in enumerate(GT_ANNS):
        anns.append(
            dict(id=k + 1,
                 image_id=img_id,
                 category_id=CAT_IDS[label],
                 bbox=box,
                 area=box[2] * box[3],
                 iscrowd=crowd,
                 segmentation=_diamond(box)))
    cats = [dict(id=c, name=n) for c, n in zip(CAT_IDS, CLASSES)]
    return dict(images=images, annotations=anns, categories=cats)


def _pred(img_id, label, xyxy, score):
    return (img_id, label, [float(v) for v in xyxy], score)


def _gt_xyxy(k, dx=0.0, dy=0.0):
    x, y, w, h = GT_ANNS[k][2]
    return [x + dx, y + dy, x + w + dx, y + h + dy]


def _perfect_preds():
    return [
        _pred(a[0], a[1], _gt_xyxy(k), 0.9) for k, a in enumerate(GT_ANNS)
        if not a[3] and a[1] in _prompted(a[0])
    ]


def _mixed_preds():
    return [
        # 101 cat (positive): good match, localisation error, duplicate, low-score noise
        _pred(101, 0, _gt_xyxy(0, 1, 0.5), 0.9),
        _pred(101, 0, _gt_xyxy(1, 6, 3), 0.8),
        _pred(101, 0, _gt_xyxy(0, 3, 2), 0.6),
        _pred(101, 0, [0, 30, 8, 40], 0.2),
        # 101 dog (positive): only below the threshold -> a miss
        _pred(101, 1, _gt_xyxy(2), 0.4),
        # 101 person (negative, crowd only): box on the crowd region reaching out of the image
        _pred(101, 2, [44, -2, 66, 12], 0.7),
        # 202 cat (negative): score exactly at the threshold is kept -> image-level FP
        _pred(202, 0, [1, 1, 10, 10], 0.5),
        # 202 person (positive)
        _pred(202, 2, _gt_xyxy(4, 2, -1), 0.95),
        # 303 dog (positive): three boxes of varying quality, one in between two GTs
        _pred(303, 1, _gt_xyxy(6, 0.5, 0.5), 0.85),
        _pred(303, 1, _gt_xyxy(7, 0, 7), 0.75),
        _pred(303, 1, [4, 24, 16, 42], 0.65),
        # 303 cat (negative): below the threshold -> true negative
        _pred(303, 0, [3, 3, 9, 9], 0.3),
    ]


def _pred_mask(img_id, xyxy):
    h, w, _ = IMAGES[img_id]
    x1, y1, x2, y2 = xyxy
    return _raster(_diamond([x1, y1, x2 - x1, y2 - y1]), h, w)


def _data_samples(preds, with_gt_instances=False, with_instances=False):
    samples = []
    for img_id, (h, w, prompt_labels) in IMAGES.items():
        mine = [p for p in preds if p[0] == img_id]
        boxes = torch.tensor([p[2] for p in mine], dtype=torch.float64).reshape(-1, 4)
        masks = np.stack([_pred_mask(img_id, p[2]) for p in mine]) if mine else \
            np.zeros((0, h, w), bool)
        sample = dict(img_id=img_id,
                      ori_shape=(h, w),
                      pred_instances=dict(bboxes=boxes,
                                          scores=torch.tensor([p[3] for p in mine],
                                                              dtype=torch.float64),
                                          labels=torch.tensor([p[1] for p in mine],
                                                              dtype=torch.long),
                                          masks=torch.from_numpy(masks)))
        if prompt_labels is not None:
            sample['prompt_labels'] = list(prompt_labels)
        anns = [a for a in GT_ANNS if a[0] == img_id]
        if with_instances:
            sample['instances'] = [
                dict(bbox=[x, y, x + bw, y + bh],
                     bbox_label=lab,
                     ignore_flag=crowd,
                     mask=_diamond([x, y, bw, bh])) for _, lab, (x, y, bw, bh), crowd in anns
            ]
        if with_gt_instances:
            # network-input frame at scale 2 (w) x 0.5 (h); crowd boxes are not in gt_instances
            keep = [a for a in anns if not a[3]]
            xyxy = np.array([[x, y, x + bw, y + bh] for _, _, (x, y, bw, bh), _ in keep],
                            dtype=np.float64).reshape(-1, 4)
            sample['scale_factor'] = (2.0, 0.5)
            sample['gt_instances'] = dict(
                bboxes=torch.from_numpy(xyxy * np.array([2.0, 0.5, 2.0, 0.5])),
                labels=torch.tensor([a[1] for a in keep], dtype=torch.long),
                masks=torch.from_numpy(
                    np.stack([_raster(_diamond(a[2]), h, w)
                              for a in keep]) if keep else np.zeros((0, h, w), bool)))
        samples.append(sample)
    return samples


def _run_ours(samples, **kwargs):
    metric = CgF1Metric(**kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, copy.deepcopy(samples))
    return metric.compute_metrics(metric.results)


@pytest.fixture(scope='module')
def official_cgf1():
    from sam3.eval import cgf1_eval
    return cgf1_eval


def _official_files(tmp_path, preds):
    """SA-Co style gt (one "image" per (image, prompted class) pair) and results json."""
    images, anns, results, pair_of = [], [], [], {}
    for img_id, (h, w, _) in IMAGES.items():
        for label in _prompted(img_id):
            pair_id = len(images) + 1
            pair_of[img_id, label] = pair_id
            images.append(
                dict(id=pair_id,
                     height=h,
                     width=w,
                     file_name=f'{img_id}.jpg',
                     text_input=CLASSES[label],
                     is_instance_exhaustive=True))
    for k, (img_id, label, box, crowd) in enumerate(GT_ANNS):
        if (img_id, label) in pair_of:
            anns.append(
                dict(id=k + 1,
                     image_id=pair_of[img_id, label],
                     category_id=1,
                     bbox=box,
                     area=box[2] * box[3],
                     iscrowd=crowd,
                     segmentation=_diamond(box)))
    for img_id, label, (x1, y1, x2, y2), score in preds:
        h, w, _ = IMAGES[img_id]
        rle = mask_util.encode(
            np.asfortranarray(_pred_mask(img_id, [x1, y1, x2, y2]).astype(np.uint8)))
        rle['counts'] = rle['counts'].decode()
        results.append(
            dict(image_id=pair_of[img_id, label],
                 category_id=1,
                 score=score,
                 bbox=[x1, y1, x2 - x1, y2 - y1],
                 segmentation=rle))
    gt_path, res_path = tmp_path / 'saco_gt.json', tmp_path / 'results.json'
    gt_path.write_text(
        json.dumps(dict(images=images, annotations=anns, categories=[dict(id=1, name='object')])))
    res_path.write_text(json.dumps(results))
    return str(gt_path), str(res_path)


# the official evaluator divides 0/0 for positive_macro_F1 when no positive pair has detections
@pytest.mark.requires_official
@pytest.mark.filterwarnings('ignore:invalid value encountered in divide:RuntimeWarning')
@pytest.mark.parametrize('pred_set', ['perfect', 'empty', 'mixed'])
def test_parity_with_official(official_cgf1, tmp_path, pred_set):
    preds = dict(perfect=_perfect_preds, empty=list, mixed=_mixed_preds)[pred_set]()
    ann_file = tmp_path / 'coco_gt.json'
    ann_file.write_text(json.dumps(_coco_gt()))
    ours = _run_ours(_data_samples(preds),
                     ann_file=str(ann_file),
                     iou_type=['bbox', 'segm'],
                     clip_boxes=False)
    gt_path, res_path = _official_files(tmp_path, preds)
    for iou_type in ('bbox', 'segm'):
        official = official_cgf1.CGF1Evaluator(gt_path, iou_type=iou_type).evaluate(res_path)
        assert len(official) == 26
        for key, value in official.items():
            name = key[len(f'cgF1_eval_{iou_type}_'):]
            name = name.replace('@0.5', '_50').replace('@0.75', '_75')
            assert ours[f'{iou_type}_{name}'] == pytest.approx(value, abs=1e-6), key
    if pred_set == 'perfect':
        assert ours['bbox_cgF1'] > 0.999 and ours['segm_IL_MCC'] > 0.999
    if pred_set == 'mixed':  # the set really mixes outcomes
        assert 0 < ours['bbox_IL_MCC'] < 1 and 0 < ours['segm_cgF1'] < ours['segm_cgF1_50']


def test_gt_sources_agree(tmp_path):
    ann_file = tmp_path / 'coco_gt.json'
    ann_file.write_text(json.dumps(_coco_gt()))
    preds = _mixed_preds()
    kwargs = dict(iou_type=['bbox', 'segm'])
    from_file = _run_ours(_data_samples(preds), ann_file=str(ann_file), **kwargs)
    from_instances = _run_ours(_data_samples(preds, with_instances=True), **kwargs)
    from_gt_instances = _run_ours(_data_samples(preds, with_gt_instances=True), **kwargs)
    assert from_file == pytest.approx(from_instances, abs=1e-12)
    assert from_file == pytest.approx(from_gt_instances, abs=1e-12)


def test_through_evaluator(tmp_path):
    from mmdet.structures import DetDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData
    ann_file = tmp_path / 'coco_gt.json'
    ann_file.write_text(json.dumps(_coco_gt()))
    # 'mmdet.' because mmdet's METRICS registry is a child of mmengine's
    evaluator = Evaluator(dict(type='mmdet.CgF1Metric', ann_file=str(ann_file), iou_type='bbox'))
    evaluator.dataset_meta = dict(classes=CLASSES)
    samples = []
    for raw in _data_samples(_mixed_preds()):  # as the model returns them: DetDataSample
        pred = InstanceData(**raw.pop('pred_instances'))
        samples.append(DetDataSample(metainfo=raw, pred_instances=pred))
    evaluator.process(samples[:2])
    evaluator.process(samples[2:])
    metrics = evaluator.evaluate(len(samples))
    assert metrics['cgf1/bbox_cgF1'] == pytest.approx(metrics['cgf1/bbox_positive_micro_F1'] *
                                                      metrics['cgf1/bbox_IL_MCC'],
                                                      abs=1e-9)
    assert not any(k.startswith('cgf1/segm') for k in metrics)


def test_clip_boxes_changes_only_overhanging_boxes(tmp_path):
    ann_file = tmp_path / 'coco_gt.json'
    ann_file.write_text(json.dumps(_coco_gt()))
    # a cat box hanging out of the right border of image 101 (width 64)
    preds = [_pred(101, 0, [30, 20, 80, 40], 0.9)]
    unclipped = _run_ours(_data_samples(preds), ann_file=str(ann_file), clip_boxes=False)
    clipped = _run_ours(_data_samples(preds), ann_file=str(ann_file), clip_boxes=True)
    # IoU with gt [30, 20, 54, 40]: 24/50 unclipped, 24/34 clipped (x2 -> 64); 7 positive GTs
    assert unclipped['bbox_recall_50'] < 1e-6
    assert clipped['bbox_recall_50'] == pytest.approx(1 / 7, abs=1e-3)
    assert clipped['bbox_recall_75'] < 1e-6


def _break(sample, how):
    pred = sample['pred_instances']
    if how == 'missing_scores':
        del pred['scores']
    elif how == 'nan_score':
        pred['scores'][0] = float('nan')
    elif how == 'inf_score':
        pred['scores'][0] = float('inf')
    elif how == 'nan_box':
        pred['bboxes'][0, 2] = float('nan')
    elif how == 'inverted_box':
        pred['bboxes'][0] = torch.tensor([10., 10., 5., 20.], dtype=torch.float64)
    elif how == 'length_mismatch':
        pred['labels'] = pred['labels'][:-1]
    elif how == 'unprompted_label':
        pred['labels'][0] = 1  # image 202 prompts only classes 0 and 2
    elif how == 'mask_shape':
        pred['masks'] = pred['masks'][:, :-1]
    elif how == 'no_gt':
        del sample['instances']
    return sample


@pytest.mark.parametrize('how, match', [('missing_scores', "lacks 'scores'"),
                                        ('nan_score', 'NaN or inf'), ('inf_score', 'NaN or inf'),
                                        ('nan_box', 'bboxes contain NaN'),
                                        ('inverted_box', 'x2 >= x1'),
                                        ('length_mismatch', 'lengths disagree'),
                                        ('unprompted_label', 'not prompted'),
                                        ('mask_shape', 'original image size'),
                                        ('no_gt', 'no ground truth')])
def test_malformed_predictions_raise(how, match):
    samples = _data_samples(_mixed_preds(), with_instances=True)
    sample = _break(samples[1], how)  # image 202
    metric = CgF1Metric(iou_type=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match=match) as err:
        metric.process({}, [sample])
    assert 'image 202' in str(err.value)


def test_duplicate_pair_and_bad_options():
    samples = _data_samples(_mixed_preds(), with_instances=True)
    metric = CgF1Metric()
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [samples[0], samples[0]])
    with pytest.raises(ValueError, match='evaluated twice'):
        metric.compute_metrics(metric.results)
    with pytest.raises(ValueError, match='iou_type'):
        CgF1Metric(iou_type='proposal')
    metric = CgF1Metric()
    with pytest.raises(ValueError, match="dataset_meta\\['classes'\\]"):
        metric.process({}, samples[:1])


def test_functional_hungarian_and_counts():
    # Greedy matching would pair d0-g0 only; the summed-IoU optimum matches both.
    ious = np.array([[0.62, 0.57], [0.58, 0.0]])
    tps = matched_true_positives(ious)
    assert tps.tolist() == [2, 2, 0, 0, 0, 0, 0, 0, 0, 0]
    # pairs: positive hit, positive miss, negative with a FP, true negative
    summary = cgf1_from_ious(
        [np.array([[0.9]]), np.zeros((0, 2)),
         np.zeros((1, 0)), np.zeros((0, 0))])
    # IL: TP=FN=FP=TN=1 -> MCC 0, so cgF1 is 0 whatever pmF1 is
    assert summary['IL_MCC'] == pytest.approx(0.0, abs=1e-9)
    assert summary['cgF1'] == pytest.approx(0.0, abs=1e-9)
    # pmF1@0.5: TP=1, FP (positive pairs) = 0, FN = 2 -> P=1, R=1/3
    assert summary['positive_micro_F1_50'] == pytest.approx(0.5, abs=1e-3)
    # plain F1 also counts the FP on the negative pair: P=1/2, R=1/3
    assert summary['F1_50'] == pytest.approx(0.4, abs=1e-3)
    stats = accumulate_cgf1([0, 0], [0, 0], np.zeros((2, len(COCO_IOU_THRS)), np.int64))
    assert summarize_cgf1(stats)['positive_macro_F1'] == -1.0
