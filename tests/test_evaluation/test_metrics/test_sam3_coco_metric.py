"""SAM3CocoMetric (checked CocoMetric) and SeenUnseenCocoMetric on a fixture with known AP.

Fixture: 3 categories car / bus / truck (ids 1..3), 2 images; predictions = ground truth for car
and bus, nothing for truck. Per-category AP: car 1, bus 1, truck 0 -> overall 2/3.
"""
import json

import pytest
import torch
from mmdet.evaluation import CocoMetric

from mmsam3.evaluation.metrics import SAM3CocoMetric, SeenUnseenCocoMetric
from tests.utils import write_coco_split

CATS = [(1, 'car'), (2, 'bus'), (3, 'truck')]
CLASSES = ('car', 'bus', 'truck')
IMAGES = [[(1, [1, 1, 10, 8]), (3, [14, 14, 12, 12])], [(2, [3, 3, 20, 20]), (1, [24, 2, 6, 6])]]


@pytest.fixture
def ann_file(tmp_path):
    return write_coco_split(str(tmp_path / 'test'), CATS, IMAGES)


def samples(undetected=('truck', ), masks=False):
    out = []
    for i, boxes in enumerate(IMAGES):
        keep = [(c, b) for c, b in boxes if CLASSES[c - 1] not in undetected]
        xyxy = torch.tensor([[x, y, x + w, y + h] for _, (x, y, w, h) in keep],
                            dtype=torch.float32).reshape(-1, 4)
        pred = dict(bboxes=xyxy, scores=torch.full((len(keep), ), 0.8),
                    labels=torch.tensor([c - 1 for c, _ in keep], dtype=torch.long))
        if masks:
            m = torch.zeros(len(keep), 32, 32, dtype=torch.bool)
            for k, (_, (x, y, w, h)) in enumerate(keep):
                m[k, y:y + h, x:x + w] = True
            pred['masks'] = m
        out.append(dict(img_id=i + 1, ori_shape=(32, 32), pred_instances=pred))
    return out


def evaluate(metric, data_samples):
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, data_samples)
    return metric.evaluate(len(data_samples))


def test_sam3_coco_metric_matches_mmdet(ann_file):
    ours = evaluate(SAM3CocoMetric(ann_file=ann_file), samples())
    ref = evaluate(CocoMetric(ann_file=ann_file), samples())
    assert ours == ref
    assert ours['coco/bbox_mAP'] == pytest.approx(0.667, abs=1e-3)


def test_seen_unseen_by_names(ann_file):
    metric = SeenUnseenCocoMetric(ann_file=ann_file, metric=['bbox', 'segm'],
                                  seen_classes=['car'])
    res = evaluate(metric, samples(masks=True))
    for t in ('bbox', 'segm'):
        assert res[f'coco/{t}_mAP'] == pytest.approx(0.667, abs=1e-3)
        assert res[f'coco/seen_{t}_mAP'] == pytest.approx(1.0)  # car
        assert res[f'coco/unseen_{t}_mAP'] == pytest.approx(0.5)  # bus 1, truck 0
    assert metric.cat_ids == [1, 2, 3]  # restored after the split evaluations


def test_seen_unseen_from_train_json_and_ids(ann_file, tmp_path):
    # the fine-tune's train json annotates car and truck only (bus is listed, not annotated)
    train = write_coco_split(str(tmp_path / 'train'), CATS, [[(1, [0, 0, 4, 4])],
                                                              [(3, [0, 0, 5, 5])]])
    res = evaluate(SeenUnseenCocoMetric(ann_file=ann_file, seen_ann_file=train), samples())
    assert res['coco/seen_bbox_mAP'] == pytest.approx(0.5)  # car 1, truck 0
    assert res['coco/unseen_bbox_mAP'] == pytest.approx(1.0)  # bus
    res = evaluate(SeenUnseenCocoMetric(ann_file=ann_file, seen_classes=[2]), samples())
    assert res['coco/seen_bbox_mAP'] == pytest.approx(1.0)  # category id 2 = bus
    assert res['coco/unseen_bbox_mAP'] == pytest.approx(0.5)


def test_seen_unseen_without_ann_file_and_empty_split(tmp_path):
    """Ground truth from the samples' ``instances`` (no ann_file); all seen -> no unseen keys."""
    data = samples()
    for s, boxes in zip(data, IMAGES):
        s['instances'] = [dict(bbox=[x, y, x + w, y + h], bbox_label=c - 1, ignore_flag=0)
                          for c, (x, y, w, h) in boxes]
    res = evaluate(SeenUnseenCocoMetric(seen_classes=list(CLASSES)), data)
    assert res['coco/seen_bbox_mAP'] == pytest.approx(0.667, abs=1e-3)
    assert not any(k.startswith('coco/unseen_') for k in res)


def test_seen_unseen_bad_options(ann_file):
    with pytest.raises(ValueError, match='exactly one'):
        SeenUnseenCocoMetric(ann_file=ann_file)
    with pytest.raises(ValueError, match='exactly one'):
        SeenUnseenCocoMetric(ann_file=ann_file, seen_classes=['car'], seen_ann_file=ann_file)


def test_boxes_outside_the_image_are_clipped(ann_file):
    # gt car [1, 1, 11, 9] (xyxy); the prediction overhangs the top-left corner:
    # IoU 80 / 192 = 0.42 as given, 80 / 99 = 0.81 once clipped to the image
    def overhanging():
        data = samples(undetected=())
        data[0]['pred_instances']['bboxes'][0] = torch.tensor([-5., -3., 11., 9.])
        return data

    res = evaluate(SAM3CocoMetric(ann_file=ann_file), overhanging())
    assert res['coco/bbox_mAP_50'] == pytest.approx(1.0)
    res = evaluate(SAM3CocoMetric(ann_file=ann_file, clip_boxes=False), overhanging())
    assert res['coco/bbox_mAP_50'] < 0.9


@pytest.mark.parametrize('how, match', [
    ('no_pred', 'image 1: data sample has no pred_instances'),
    ('no_scores', "image 1: pred_instances lacks 'scores'"),
    ('nan_box', 'image 1: pred bboxes contain NaN or inf'),
    ('inf_score', 'image 1: pred scores contain NaN or inf'),
    ('bad_shape', 'image 1: pred bboxes must be \\(N, 4\\)'),
    ('float_label', 'image 1: pred labels must be integers'),
    ('label_range', "image 1: pred labels \\[5\\] outside the dataset's 3 classes"),
    ('no_masks', 'image 1: segm evaluation needs pred_instances.masks'),
    ('mask_size', 'image 1: pred masks must be \\(N, H, W\\)'),
    ('no_img_id', "data sample without 'img_id'"),
])
def test_malformed_predictions(ann_file, how, match):
    data = samples(masks=True)
    pred = data[0]['pred_instances']
    if how == 'no_pred':
        del data[0]['pred_instances']
    elif how == 'no_scores':
        del pred['scores']
    elif how == 'nan_box':
        pred['bboxes'][0, 1] = float('nan')
    elif how == 'inf_score':
        pred['scores'][0] = float('inf')
    elif how == 'bad_shape':
        pred['bboxes'] = pred['bboxes'][:, :3]
    elif how == 'float_label':
        pred['labels'] = pred['labels'].float() + 0.5
    elif how == 'label_range':
        pred['labels'][0] = 5
    elif how == 'no_masks':
        del pred['masks']
    elif how == 'mask_size':
        pred['masks'] = pred['masks'][:, :16]
    elif how == 'no_img_id':
        del data[0]['img_id']
    metric = SAM3CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match=match):
        metric.process({}, data)


def test_seen_json_must_be_coco(tmp_path, ann_file):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'images': []}))
    with pytest.raises(ValueError, match='not a COCO json'):
        SeenUnseenCocoMetric(ann_file=ann_file, seen_ann_file=str(bad))
