"""SAM3Criterion: parity of every loss term with the official ``Sam3LossWrapper`` (RF100-VL
recipe), negative prompts, and running without ``torch.distributed``.

The official loss modules need two things a CPU test box may lack, both patched here only:
``torchmetrics`` (used for the logged ``ce_f1`` metric, stubbed when absent) and the Triton
focal-loss kernel (the official ``sigmoid_focal_loss`` is called with ``triton=False``, its own
PyTorch path, identical formula). ``torch.distributed.all_reduce`` is made a no-op for the
official ``normalization='global'`` (world size is 1 without a process group).
"""
import functools
import math
import sys
import types

import pytest
import torch
from mmengine.structures import InstanceData

from mmsam3.models.losses import SAM3Criterion, pack_sam3_targets

# official key -> (our key, our weight)
TERMS = {
    'loss_ce': ('loss_cls', 20.0),
    'presence_loss': ('loss_presence', 20.0),
    'loss_bbox': ('loss_bbox', 5.0),
    'loss_giou': ('loss_giou', 2.0),
    'loss_mask': ('loss_mask', 200.0),
    'loss_dice': ('loss_dice', 10.0),
}
NUM_AUX = 5


def _import_official_losses():
    if 'torchmetrics' not in sys.modules:
        try:
            import torchmetrics  # noqa: F401
        except ImportError:
            stub = types.ModuleType('torchmetrics')
            stub.functional = types.ModuleType('torchmetrics.functional')
            stub.functional.f1_score = lambda *args, **kwargs: torch.tensor(0.0)
            sys.modules['torchmetrics'] = stub
            sys.modules['torchmetrics.functional'] = stub.functional
    from sam3.model.box_ops import box_cxcywh_to_xyxy
    from sam3.model.model_misc import SAM3Output
    from sam3.train.loss import loss_fns, sam3_loss
    from sam3.train.matcher import BinaryHungarianMatcherV2, BinaryOneToManyMatcher
    return types.SimpleNamespace(
        loss_fns=loss_fns, sam3_loss=sam3_loss, SAM3Output=SAM3Output,
        BinaryHungarianMatcherV2=BinaryHungarianMatcherV2,
        BinaryOneToManyMatcher=BinaryOneToManyMatcher, box_cxcywh_to_xyxy=box_cxcywh_to_xyxy)


@pytest.fixture
def official(monkeypatch):
    ns = _import_official_losses()
    monkeypatch.setattr(ns.loss_fns, 'sigmoid_focal_loss',
                        functools.partial(ns.loss_fns.sigmoid_focal_loss, triton=False))
    monkeypatch.setattr(torch.distributed, 'all_reduce', lambda *args, **kwargs: None)
    return ns


def build_official_wrapper(ns, with_masks, pad_n_queries=200):
    """The loss of ``roboflow_v100_full_ft_100_images.yaml`` (+ its commented mask variant);
    ``pad_n_queries`` is the number of queries of the model (200 in SAM 3)."""
    loss_fns = [
        ns.loss_fns.Boxes(weight_dict=dict(loss_bbox=5.0, loss_giou=2.0)),
        ns.loss_fns.IABCEMdetr(
            weak_loss=False, weight_dict=dict(loss_ce=20.0, presence_loss=20.0),
            pos_weight=10.0, alpha=0.25, gamma=2, use_presence=True, pos_focal=False,
            pad_n_queries=pad_n_queries, pad_scale_pos=1.0),
    ]
    if with_masks:
        loss_fns.append(ns.loss_fns.Masks(
            focal_alpha=0.25, focal_gamma=2.0, weight_dict=dict(loss_mask=200.0, loss_dice=10.0),
            compute_aux=False))
    matcher = ns.BinaryHungarianMatcherV2(
        focal=True, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2,
        stable=False)
    return ns.sam3_loss.Sam3LossWrapper(
        loss_fns_find=loss_fns, matcher=matcher, o2m_weight=2.0,
        o2m_matcher=ns.BinaryOneToManyMatcher(alpha=0.3, threshold=0.4, topk=4),
        use_o2m_matcher_on_o2m_aux=False, loss_fn_semantic_seg=None,
        scale_by_find_batch_size=True)


def _cxcywh_to_xyxy(b):
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def make_case(counts, num_queries=200, with_masks=False, seed=0, mask_hw=(8, 8),
              gt_hw=(16, 16)):
    """Random per-prompt targets and model outputs; some queries sit near the targets (so the
    o2m matcher fires), and prompts with >= 2 targets get two heavily overlapping ones (so one
    o2m query can match both)."""
    g = torch.Generator().manual_seed(seed)
    B, Q = len(counts), num_queries

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    targets = []
    for n in counts:
        boxes = torch.cat([rand(n, 2) * 0.6 + 0.2, rand(n, 2) * 0.3 + 0.1], -1)
        if n >= 2:
            boxes[1] = boxes[0] + torch.tensor([0.01, -0.01, 0.02, 0.01])
        inst = InstanceData(bboxes=boxes)
        if with_masks:
            inst.masks = rand(n, *gt_hw) > 0.5
            valid = torch.ones(n, dtype=torch.bool)
            if n >= 3:
                valid[2] = False
            inst.mask_valid = valid
        targets.append(inst)

    def layer(with_mask):
        logits = torch.randn(B, Q, 1, generator=g)
        boxes = torch.cat([rand(B, Q, 2) * 0.8 + 0.1, rand(B, Q, 2) * 0.3 + 0.05], -1)
        for b, t in enumerate(targets):
            for j, box in enumerate(t.bboxes):
                for k in range(3):  # a few good candidates per target
                    q = (7 * j + 3 * k + b) % Q
                    boxes[b, q] = (box + 0.02 * torch.randn(4, generator=g)).clamp(0.02, 0.98)
                    logits[b, q] = 1.0 + torch.randn(1, generator=g)
        out = dict(pred_logits=logits, pred_boxes=boxes, pred_boxes_xyxy=_cxcywh_to_xyxy(boxes))
        if with_mask:
            out['pred_masks'] = torch.randn(B, Q, *mask_hw, generator=g)
        return out

    outputs = layer(with_masks)
    outputs['presence_logit_dec'] = torch.randn(B, 1, generator=g)
    o2m = layer(with_masks)
    outputs.update({f'{k}_o2m': v for k, v in o2m.items()})
    aux = []
    for _ in range(NUM_AUX):
        a = layer(False)
        a['presence_logit_dec'] = torch.randn(B, 1, generator=g)
        a.update({f'{k}_o2m': v for k, v in layer(False).items()})
        aux.append(a)
    outputs['aux_outputs'] = aux
    for d in [outputs] + aux:
        for v in d.values():
            if isinstance(v, torch.Tensor):
                v.requires_grad_(True)
    return outputs, targets


def official_targets(ns, targets):
    """What ``Sam3Image.back_convert(BatchedFindTarget)`` gives for these prompts."""
    counts = [len(t.bboxes) for t in targets]
    boxes = torch.cat([t.bboxes for t in targets]).view(-1, 4)
    max_n = max(counts)
    padded = torch.zeros(len(counts), max_n, 4)
    ids = torch.full((len(counts), max_n), -1, dtype=torch.long)
    k = 0
    for b, (t, n) in enumerate(zip(targets, counts)):
        padded[b, :n] = t.bboxes
        ids[b, :n] = torch.arange(k, k + n)
        k += n
    has_masks = 'masks' in targets[0]
    return dict(
        boxes=boxes, boxes_xyxy=ns.box_cxcywh_to_xyxy(boxes), boxes_padded=padded,
        num_boxes=torch.tensor(counts), is_exhaustive=torch.ones(len(counts), dtype=torch.bool),
        object_ids_padded=ids,
        masks=torch.cat([t.masks for t in targets]) if has_masks else None,
        is_valid_mask=torch.cat([t.mask_valid for t in targets]) if has_masks else None)


def run_official(ns, outputs, targets, with_masks):
    tgt = official_targets(ns, targets)
    wrapper = build_official_wrapper(ns, with_masks)
    # The model runs the o2o matcher inside forward_grounding (``_compute_matching``).
    out = {k: v for k, v in outputs.items() if k != 'aux_outputs'}
    out['aux_outputs'] = [dict(a) for a in outputs['aux_outputs']]
    out['indices'] = wrapper.matcher(out, tgt)
    for a in out['aux_outputs']:
        a['indices'] = wrapper.matcher(a, tgt)
    return wrapper(ns.SAM3Output([[out]]), [tgt])


def official_to_ours_key(key):
    """``loss_giou_aux_3_o2m`` -> (``d3.loss_giou_o2m``, weight); None for metrics."""
    o2m = key.endswith('_o2m')
    base = key[:-4] if o2m else key
    prefix = ''
    if '_aux_' in base:
        base, i = base.split('_aux_')
        prefix = f'd{i}.'
    if base not in TERMS:
        return None, None
    ours, weight = TERMS[base]
    return prefix + ours + ('_o2m' if o2m else ''), weight


CASES = {
    'positive': [3, 2, 1],
    'mixed': [2, 0, 3, 0],
    'negative': [0, 0],
}


def compare(official_losses, ours, num_prompts):
    scale = math.sqrt(num_prompts)
    seen, diffs = set(), {}
    for key, value in official_losses.items():
        our_key, weight = official_to_ours_key(key)
        if our_key is None:
            continue
        if our_key not in ours:
            # the o2m half carries no presence logit: the official term is a constant 0
            assert key.startswith('presence_loss') and key.endswith('_o2m'), key
            assert float(value) == 0.0
            continue
        seen.add(our_key)
        diffs[our_key] = abs(float(ours[our_key]) / (weight * scale) - float(value))
    assert seen == set(ours), set(ours) ^ seen
    total = sum(ours.values())
    core = official_losses['core_loss']
    assert abs(float(total) - float(core)) <= 1e-5 * max(1.0, abs(float(core)))
    return diffs


@pytest.mark.requires_official
@pytest.mark.parametrize('with_masks', [False, True], ids=['boxes', 'masks'])
@pytest.mark.parametrize('case', list(CASES))
def test_parity_with_official_loss(official, case, with_masks):
    counts = CASES[case]
    outputs, targets = make_case(counts, with_masks=with_masks, seed=len(counts))
    ref = run_official(official, outputs, targets, with_masks)
    ours = SAM3Criterion()(outputs, targets)
    diffs = compare(ref, ours, len(counts))
    assert max(diffs.values()) <= 1e-5, diffs
    expected = {'loss_cls', 'loss_presence', 'loss_bbox', 'loss_giou', 'loss_cls_o2m',
                'loss_bbox_o2m', 'loss_giou_o2m', 'd4.loss_presence', 'd0.loss_giou_o2m'}
    if with_masks:
        expected |= {'loss_mask', 'loss_dice', 'loss_mask_o2m', 'loss_dice_o2m'}
    assert expected <= set(ours)
    assert not any(k.startswith('d') and 'mask' in k for k in ours)  # no aux masks
    if case == 'negative':
        # all queries negative and no classification loss; presence target 0
        for k, v in ours.items():
            if 'presence' not in k:
                assert float(v) == 0.0, k
        assert float(ours['loss_presence']) > 0


@pytest.mark.requires_official
def test_parity_fewer_queries_than_pad(official):
    """Q < pad_n_queries (200): the BCE sum is divided by 200 * B, as officially."""
    outputs, targets = make_case([2, 0, 1], num_queries=12, seed=5)
    ref = run_official(official, outputs, targets, False)
    ours = SAM3Criterion()(outputs, targets)
    diffs = compare(ref, ours, 3)
    assert max(diffs.values()) <= 1e-5, diffs


@pytest.mark.requires_official
def test_o2m_query_matched_to_two_targets(official):
    """The o2m matcher may give one query two targets; the soft target then matches the
    official result (last pair wins)."""
    from mmsam3.models.task_modules import SAM3OneToManyAssigner
    counts = [2, 0, 3, 0]
    outputs, targets = make_case(counts, seed=len(counts))
    packed = pack_sam3_targets(targets)
    b, q, _ = SAM3OneToManyAssigner().match(outputs['pred_logits_o2m'],
                                            outputs['pred_boxes_o2m'],
                                            packed['boxes_padded'], packed['num_boxes'])
    pairs = list(zip(b.tolist(), q.tolist()))
    assert len(pairs) != len(set(pairs)), 'test data should produce a duplicated o2m query'


def test_gradients_and_targets_as_packed_dict():
    outputs, targets = make_case([2, 0, 1], num_queries=16, with_masks=True, seed=3)
    criterion = SAM3Criterion()
    losses = criterion(outputs, targets)
    packed = pack_sam3_targets(targets)
    losses2 = criterion(outputs, {k: packed[k] for k in
                                  ('boxes', 'num_boxes', 'masks', 'is_valid_mask')})
    for k in losses:
        assert torch.allclose(losses[k], losses2[k]), k
    sum(losses.values()).backward()
    for t in (outputs['pred_logits'], outputs['pred_boxes'], outputs['presence_logit_dec'],
              outputs['pred_masks'], outputs['pred_masks_o2m'],
              outputs['aux_outputs'][0]['pred_logits_o2m']):
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_negative_prompt_gets_only_presence_loss():
    outputs, targets = make_case([0], num_queries=10, seed=1)
    losses = SAM3Criterion()(outputs, targets)
    sum(losses.values()).backward()
    assert outputs['pred_logits'].grad.abs().sum() == 0
    x = outputs['presence_logit_dec'].detach()
    # 20 * 0.5 * BCE(x, 0) for one prompt, sqrt(1) scaling
    expected = 20 * 0.5 * torch.nn.functional.softplus(x).mean()
    assert torch.allclose(losses['loss_presence'], expected)
    assert outputs['presence_logit_dec'].grad.abs().sum() > 0


def test_single_process_without_torch_distributed(monkeypatch):
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    outputs, targets = make_case([3, 1], num_queries=10, seed=2)
    criterion = SAM3Criterion()
    losses = criterion(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(criterion.get_num_boxes(torch.tensor([0, 0]))) == 1.0  # floor at 1

    # Simulated 2-rank job: the other rank holds 8 boxes -> normaliser (4 + 8) / 2 = 6.
    from mmsam3.models.losses import sam3_criterion as mod

    def fake_all_reduce(t, op='sum'):
        assert op == 'mean'
        t.copy_((t + 8) / 2)

    monkeypatch.setattr(mod.dist, 'is_distributed', lambda: True)
    monkeypatch.setattr(mod.dist, 'all_reduce', fake_all_reduce)
    assert float(criterion.get_num_boxes(torch.tensor([3, 1]))) == 6.0
    losses_dist = criterion(outputs, targets)
    assert torch.allclose(losses_dist['loss_bbox'] * 6, losses['loss_bbox'] * 4)


def test_registry_build_with_odinw_pos_weight():
    from mmdet.registry import MODELS
    crit = MODELS.build(dict(type='SAM3Criterion', cls_loss=dict(type='SAM3IABCELoss',
                                                                 pos_weight=5.0)))
    assert crit.cls_loss.pos_weight == 5.0 and crit.o2m_weight == 2.0
    assert crit.o2m_matcher.topk == 4 and crit.matcher.bbox_cost.weight == 5.0
