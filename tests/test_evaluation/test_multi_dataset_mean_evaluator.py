"""MultiDatasetMeanEvaluator on three tiny Roboflow-layout datasets (ground truth as predictions,
one category left undetected so the answer is known), plus the malformed-prediction errors."""
import os.path as osp

import pytest
import torch
from mmdet.registry import DATASETS, EVALUATOR
from mmengine.registry import init_default_scope

import mmsam3  # noqa: F401
from tests.utils import write_coco_split

# name -> (categories, images: per image [(category_id, xywh)])
DATASETS_SPEC = {
    'alpha': ([(1, 'cat'), (2, 'dog')],
              [[(1, [2, 2, 10, 12]), (2, [16, 14, 12, 10])], [(1, [4, 6, 20, 16])]]),
    # Roboflow supercategory-only category id 0: prompted, ignored by COCOeval (no ground truth)
    'beta': ([(0, 'fruit'), (1, 'apple')], [[(1, [5, 5, 14, 14])]]),
    'gamma': ([(1, 'car'), (2, 'bus'), (3, 'truck')],
              [[(1, [1, 1, 10, 8]), (3, [14, 14, 12, 12])], [(2, [3, 3, 20, 20])]]),
}
UNDETECTED = {'gamma': {'truck'}}  # gamma: 2 of 3 categories found -> AP 2/3


def make_datasets(root, spec=DATASETS_SPEC):
    for name, (cats, images) in spec.items():
        write_coco_split(osp.join(root, name, 'test'), cats, images)
    return root


def concat_dataset(root, names):
    init_default_scope('mmdet')
    return DATASETS.build(
        dict(type='ConcatDataset',
             datasets=[dict(type='SAM3PromptCocoDataset', data_root=osp.join(root, n) + '/',
                            split='test', test_mode=True, pipeline=[]) for n in names]))


def gt_as_predictions(info, classes, undetected=()):
    keep = [i for i in info['instances'] if classes[i['bbox_label']] not in undetected]
    boxes = torch.tensor([i['bbox'] for i in keep], dtype=torch.float32).reshape(-1, 4)
    return dict(img_id=info['img_id'], ori_shape=(info['height'], info['width']),
                pred_instances=dict(bboxes=boxes, scores=torch.full((len(keep), ), 0.9),
                                    labels=torch.tensor([i['bbox_label'] for i in keep],
                                                        dtype=torch.long)))


def build_evaluator(root, names, metric_type='SAM3CocoMetric'):
    return EVALUATOR.build(
        dict(type='MultiDatasetMeanEvaluator', dataset_prefixes=list(names),
             metrics=[dict(type=metric_type, metric='bbox',
                           ann_file=osp.join(root, n, 'test', '_annotations.coco.json'))
                      for n in names]))


def run(evaluator, concat, names, batch_size=2, undetected=UNDETECTED, break_fn=None):
    evaluator.dataset_meta = concat.metainfo
    samples = []
    for idx in range(len(concat)):
        ds_idx, _ = concat._get_ori_dataset_idx(idx)
        classes = concat.datasets[ds_idx].metainfo['classes']
        samples.append(gt_as_predictions(concat[idx], classes,
                                         undetected.get(names[ds_idx], ())))
    if break_fn is not None:
        break_fn(samples)
    for start in range(0, len(samples), batch_size):  # batches cross dataset boundaries
        evaluator.process(samples[start:start + batch_size], {})
    return evaluator.evaluate(len(concat))


def test_per_dataset_and_mean_ap(tmp_path):
    root = make_datasets(str(tmp_path))
    names = list(DATASETS_SPEC)
    concat = concat_dataset(root, names)
    results = run(build_evaluator(root, names), concat, names, batch_size=2)
    assert results['alpha/coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['beta/coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['gamma/coco/bbox_mAP'] == pytest.approx(0.667, abs=1e-3)
    assert results['mean/coco/bbox_mAP'] == pytest.approx((1 + 1 + 0.667) / 3, abs=1e-3)
    assert results['mean/coco/bbox_mAP_50'] == pytest.approx((1 + 1 + 0.667) / 3, abs=1e-3)
    assert 'mean/coco/bbox_mAP_copypaste' not in results  # strings are not averaged


def test_plain_mmdet_coco_metric_and_shared_metainfo(tmp_path):
    """mmdet's own CocoMetric works as the per-dataset metric; two datasets with identical
    metainfo share it (the evaluator gets their classes)."""
    spec = {'a': DATASETS_SPEC['alpha'], 'b': DATASETS_SPEC['alpha']}
    root = make_datasets(str(tmp_path), spec)
    concat = concat_dataset(root, ['a', 'b'])
    assert list(concat.metainfo['classes']) == ['cat', 'dog']
    assert concat.metainfo['classes'] == concat.datasets[1].metainfo['classes']
    results = run(build_evaluator(root, ['a', 'b'], 'CocoMetric'), concat, ['a', 'b'],
                  batch_size=3, undetected={'b': {'dog'}})
    assert results['a/coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['b/coco/bbox_mAP'] == pytest.approx(0.5)
    assert results['mean/coco/bbox_mAP'] == pytest.approx(0.75)


def test_each_metric_sees_only_its_dataset(tmp_path):
    root = make_datasets(str(tmp_path))
    names = list(DATASETS_SPEC)
    concat = concat_dataset(root, names)
    evaluator = build_evaluator(root, names)
    evaluator.dataset_meta = concat.metainfo
    # per-dataset classes reach the metrics before evaluate()
    assert [m.dataset_meta['classes'] for m in evaluator.metrics] == [
        ('cat', 'dog'), ('fruit', 'apple'), ('car', 'bus', 'truck')]
    samples = [gt_as_predictions(concat[i], ('x', ) * 3) for i in range(len(concat))]
    evaluator.process(samples, {})
    for metric, (start, end) in zip(evaluator.metrics, [(0, 2), (2, 3), (3, 5)]):
        real = [i for i, r in enumerate(metric.results) if r is not None]
        assert real == list(range(start, end))


def test_wrong_number_of_prefixes(tmp_path):
    root = make_datasets(str(tmp_path))
    concat = concat_dataset(root, list(DATASETS_SPEC))
    evaluator = build_evaluator(root, ['alpha', 'beta'])
    with pytest.raises(ValueError, match='3 datasets but dataset_prefixes names 2'):
        evaluator.dataset_meta = concat.metainfo
    with pytest.raises(ValueError, match='unique'):
        EVALUATOR.build(dict(type='MultiDatasetMeanEvaluator', dataset_prefixes=['a', 'a'],
                             metrics=[dict(type='CocoMetric')] * 2))


def _nan_score(samples):
    samples[3]['pred_instances']['scores'][0] = float('nan')


def _label_out_of_range(samples):
    # beta has 2 classes: label 2 would be valid for gamma, not for beta (routing matters)
    samples[2]['pred_instances']['labels'][0] = 2


def _missing_labels(samples):
    del samples[0]['pred_instances']['labels']


@pytest.mark.parametrize('break_fn, match', [
    (_nan_score, 'image 1: pred scores contain NaN or inf'),
    (_label_out_of_range, "image 1: pred labels \\[2\\] outside the dataset's 2 classes"),
    (_missing_labels, "image 1: pred_instances lacks 'labels'"),
])
def test_malformed_predictions_give_clear_errors(tmp_path, break_fn, match):
    root = make_datasets(str(tmp_path))
    names = list(DATASETS_SPEC)
    concat = concat_dataset(root, names)
    with pytest.raises(ValueError, match=match):
        run(build_evaluator(root, names), concat, names, break_fn=break_fn)


def test_routing_follows_the_distributed_sampler_order(tmp_path, monkeypatch):
    """Two simulated ranks with DefaultSampler(shuffle=False, round_up=True): 5 samples ->
    rank 0 gets [0, 2, 4], rank 1 gets [1, 3, 0 (padding)]; collect_results interleaves them."""
    import mmsam3.evaluation.evaluator.multi_dataset_mean_evaluator as mod
    root = make_datasets(str(tmp_path))
    names = list(DATASETS_SPEC)
    concat = concat_dataset(root, names)
    samples = []
    for idx in range(len(concat)):
        ds_idx, _ = concat._get_ori_dataset_idx(idx)
        samples.append(gt_as_predictions(concat[idx], concat.datasets[ds_idx].metainfo['classes'],
                                         UNDETECTED.get(names[ds_idx], ())))
    ranks = [build_evaluator(root, names) for _ in range(2)]
    for rank, (evaluator, indices) in enumerate(zip(ranks, ([0, 2, 4], [1, 3, 0]))):
        monkeypatch.setattr(mod, 'get_dist_info', lambda rank=rank: (rank, 2))
        evaluator.dataset_meta = concat.metainfo
        for i in indices:
            evaluator.process([samples[i]], {})
    partner = {id(m.results): o.results for m, o in zip(ranks[0].metrics, ranks[1].metrics)}

    def collect(results, size, device='cpu'):  # mmengine's collect_results order
        ordered = []
        for pair in zip(results, partner[id(results)]):
            ordered.extend(pair)
        return ordered[:size]

    monkeypatch.setattr(mod, 'collect_results', collect)
    monkeypatch.setattr(mod, 'get_dist_info', lambda: (0, 2))
    results = ranks[0].evaluate(len(concat))
    assert results['alpha/coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['gamma/coco/bbox_mAP'] == pytest.approx(0.667, abs=1e-3)
    assert results['mean/coco/bbox_mAP'] == pytest.approx((2 + 0.667) / 3, abs=1e-3)
