"""SAM 3 matchers: index parity with the official ``sam3.train.matcher`` classes, negative
prompts, non-finite costs, and the mmdet ``assign`` interface."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmsam3.models.task_modules import (NonFiniteCostWarning, SAM3HungarianAssigner,
                                        SAM3OneToManyAssigner)


def make_batch(counts, num_queries, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(counts)
    logits = torch.randn(B, num_queries, 1, generator=g) * 2
    boxes = torch.cat([torch.rand(B, num_queries, 2, generator=g) * 0.8 + 0.1,
                       torch.rand(B, num_queries, 2, generator=g) * 0.3 + 0.05], -1)
    max_n = max(counts)
    padded = torch.zeros(B, max_n, 4)
    for b, n in enumerate(counts):
        padded[b, :n] = torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2,
                                   torch.rand(n, 2, generator=g) * 0.3 + 0.1], -1)
        for j in range(n):  # a close candidate query per target, to make o2m fire
            q = (5 * j + b) % num_queries
            boxes[b, q] = padded[b, j] + 0.01
            logits[b, q] = 2.0
    packed = torch.cat([padded[b, :n] for b, n in enumerate(counts)])
    outputs = dict(pred_logits=logits, pred_boxes=boxes)
    targets = dict(boxes=packed, boxes_padded=padded, num_boxes=torch.tensor(counts))
    return outputs, targets


def as_triples(indices, total_targets):
    b, s, t = indices
    if t is None:  # official: every target, in packed order
        t = torch.arange(total_targets)
    return sorted(zip(b.tolist(), s.tolist(), t.tolist()))


@pytest.mark.parametrize('counts,num_queries', [([3, 0, 2, 1], 20), ([2, 5, 0], 4),
                                                ([0, 0], 8), ([1], 1)])
@pytest.mark.requires_official
def test_hungarian_matches_official(counts, num_queries):
    from sam3.train.matcher import BinaryHungarianMatcherV2
    official = BinaryHungarianMatcherV2(focal=True, cost_class=2.0, cost_bbox=5.0,
                                        cost_giou=2.0, alpha=0.25, gamma=2, stable=False)
    ours = SAM3HungarianAssigner()
    for seed in range(3):
        outputs, targets = make_batch(counts, num_queries, seed)
        total = sum(counts)
        ref = as_triples(official(outputs, targets), total)
        got = ours(outputs, targets)
        assert as_triples(got, total) == ref
        assert len(ref) == sum(min(n, num_queries) for n in counts)
        # within a prompt, pairs are listed in target order
        assert got.tgt_idx.tolist() == sorted(got.tgt_idx.tolist())


@pytest.mark.parametrize('counts,num_queries', [([3, 0, 2, 1], 20), ([2, 5, 0], 10),
                                                ([0, 0], 8)])
@pytest.mark.requires_official
def test_one_to_many_matches_official(counts, num_queries):
    from sam3.train.matcher import BinaryOneToManyMatcher
    official = BinaryOneToManyMatcher(alpha=0.3, threshold=0.4, topk=4)
    ours = SAM3OneToManyAssigner()
    assert (ours.alpha, ours.threshold, ours.topk) == (0.3, 0.4, 4)
    found = 0
    for seed in range(3):
        outputs, targets = make_batch(counts, num_queries, seed)
        ref = official(outputs, targets)
        got = ours(outputs, targets)
        for r, o in zip(ref, got):  # same pairs, same order
            assert r.tolist() == o.tolist()
        found += len(got.batch_idx)
    if sum(counts):
        assert found > 0


def test_negative_prompts_get_no_match():
    outputs, targets = make_batch([0, 0, 0], 6)
    for matcher in (SAM3HungarianAssigner(), SAM3OneToManyAssigner()):
        b, s, t = matcher(outputs, targets)
        assert b.numel() == s.numel() == t.numel() == 0 and b.dtype == torch.long


def test_nonfinite_costs_do_not_crash():
    counts, Q = [3, 2], 8
    outputs, targets = make_batch(counts, Q)
    outputs['pred_boxes'][0, 1] = float('nan')
    outputs['pred_boxes'][1, :3, 2:] = 0.0  # zero-area predictions
    outputs['pred_logits'][0, 2] = float('inf')
    outputs['pred_logits'][1, 4] = float('nan')
    targets['boxes_padded'][1, 1] = 0.0  # a degenerate target: GIoU 0/0
    ours = SAM3HungarianAssigner()
    with pytest.warns(NonFiniteCostWarning):
        b, s, t = ours(outputs, targets)
    assert ours.last_num_nonfinite_costs > 0
    assert ours.num_nonfinite_costs == ours.last_num_nonfinite_costs
    # a valid assignment: every target once, no query twice within a prompt
    assert sorted(t.tolist()) == list(range(sum(counts)))
    pairs = list(zip(b.tolist(), s.tolist()))
    assert len(set(pairs)) == len(pairs)
    # a NaN query is avoided whenever a finite alternative exists
    assert (0, 1) not in pairs and (1, 4) not in pairs

    o2m = SAM3OneToManyAssigner()
    with pytest.warns(NonFiniteCostWarning):
        b2, s2, _ = o2m(outputs, targets)
    assert o2m.last_num_nonfinite_costs > 0
    assert (0, 1) not in list(zip(b2.tolist(), s2.tolist()))


@pytest.mark.requires_official
def test_official_matcher_crashes_on_nan():
    """Documents why sanitising is needed: scipy rejects NaN in the official matcher."""
    from sam3.train.matcher import BinaryHungarianMatcherV2
    outputs, targets = make_batch([2], 4)
    outputs['pred_boxes'][0, 0] = float('nan')
    with pytest.raises(ValueError):
        BinaryHungarianMatcherV2(focal=True, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0)(
            outputs, targets)


def test_assign_interface_and_registry():
    from mmdet.registry import TASK_UTILS
    assigner = TASK_UTILS.build(dict(type='SAM3HungarianAssigner'))
    assert (assigner.cls_cost.weight, assigner.bbox_cost.weight,
            assigner.giou_cost.weight) == (2.0, 5.0, 2.0)
    assert (assigner.cls_cost.alpha, assigner.cls_cost.gamma) == (0.25, 2.0)
    outputs, targets = make_batch([3], 10)
    pred = InstanceData(scores=outputs['pred_logits'][0], bboxes=outputs['pred_boxes'][0])
    gt = InstanceData(bboxes=targets['boxes'])
    res = assigner.assign(pred, gt)
    assert res.num_gts == 3 and sorted(res.gt_inds[res.gt_inds > 0].tolist()) == [1, 2, 3]
    assert (res.labels >= 0).sum() == 3
    b, s, t = assigner(outputs, targets)
    assert res.gt_inds[s].tolist() == (t + 1).tolist()
    # per-prompt mmdet match costs equal the batched matrix
    cost = sum(c(pred, gt) for c in (assigner.bbox_cost, assigner.cls_cost, assigner.giou_cost))
    batched = assigner.cost_matrix(outputs['pred_logits'][..., 0], outputs['pred_boxes'],
                                   targets['boxes_padded'])[0]
    assert torch.allclose(cost, batched, atol=1e-6)
    empty = assigner.assign(pred, InstanceData(bboxes=torch.zeros(0, 4)))
    assert empty.num_gts == 0 and (empty.gt_inds == 0).all()
    assert TASK_UTILS.build(dict(type='SAM3OneToManyAssigner')).topk == 4
    assert np.isfinite(assigner.nonfinite_cost)
