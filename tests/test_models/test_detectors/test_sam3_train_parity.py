"""SAM3 training path, end to end, against Meta's official ``Sam3Image`` (tiny sizes).

Both models hold the same (randomised) weights, run in train mode (DAC: one-to-one plus
one-to-many queries, activation checkpointing in the official model) on the same two images and
five prompts (shared phrases across images, a negative prompt, exemplar boxes with a negative
box), and are compared on

* every raw output: o2o and o2m logits and boxes of every decoder layer, presence logits of
  every layer, o2o and o2m mask logits, the semantic map;
* the gradient of every parameter (backbone, neck, text encoder, geometry encoder, fusion
  encoder, decoder, scoring head, mask head) and of the input image and the text features, for
  (a) a fixed random linear functional of all outputs and (b) the training loss: ours
  (``SAM3.loss``: target packing + ``SAM3Criterion``) against the official RF100-VL
  ``Sam3LossWrapper`` fed with the model's own in-forward Hungarian matching.

Dropout and drop-path are set to 0 on both sides so both passes are deterministic.
"""
import contextlib
import functools
import math
import tempfile

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from tests.utils import random_linear_functional, randomize_parameters

SIZE = 168
NQ = 20  # queries of the tiny model
# (image, phrase, label of the phrase, exemplar boxes xyxy px or None, their labels)
PROMPTS = (
    (0, 'red apple', 1, None, None),
    (0, 'dog', 2, None, None),  # negative: no instance of label 2 in image 0
    (1, 'red apple', 1, [[20., 30., 90., 100.], [100., 40., 150., 70.]], [1, 0]),
    (1, 'a small cat', 3, None, None),
    (1, 'dog', 2, None, None),
)
# (image, label, box xyxy px); masks are the filled boxes
GT = (
    (0, 1, [10., 12., 60., 50.]),
    (0, 1, [90., 80., 150., 130.]),
    (0, 3, [30., 100., 70., 160.]),
    (1, 1, [22., 28., 88., 104.]),
    (1, 3, [100., 10., 160., 60.]),
    (1, 3, [104., 14., 158., 66.]),  # overlaps the previous one: o2m can take both
    (1, 2, [0., 120., 40., 168.]),
)
# Parameter-gradient tolerance, relative to the largest official gradient of the same parameter
# tensor (float32, two independent implementations with different op orders).
GRAD_RTOL = 1e-4
OUT_ATOL = 1e-4
# A parameter whose official gradient is below NOISE x the largest gradient of its module is
# treated as having a zero gradient (float32 rounding noise only).
NOISE = 1e-6


# ------------------------------------------------------------------------------------ builders
def _zero_stochastic_ops(model):
    """Dropout / attention dropout / drop-path to 0 (both implementations), train mode kept."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, 'dropout', None), float):
            m.dropout = 0.0
        if hasattr(m, 'drop_prob'):
            m.drop_prob = 0.0


def build_pair(bpe_path, seed=0):
    """Official tiny ``Sam3Image`` (with its training matcher) and ours, identical weights."""
    from mmsam3.testing import official_sam3
    from parity_official import build_ours, official_to_ours

    official = official_sam3.build_official_image_model('tiny', seed=seed, bpe_path=bpe_path,
                                                        eval_mode=False)
    randomize_parameters(official, seed)
    # Keep the box-refinement deltas and presence logits moderate so sigmoids do not saturate.
    with torch.no_grad():
        dec = official.transformer.decoder
        dec.bbox_embed.layers[-1].weight.mul_(0.3)
    with tempfile.TemporaryDirectory() as tmp:
        state, report = official_to_ours(official, tmp)
    assert report['unknown'] == []
    ours, _ = build_ours('tiny', state, bpe_path)
    for m in (official, ours):
        _zero_stochastic_ops(m)
        m.train()
    return official, ours


def official_name(our_name):
    """Our parameter name -> the official one (inverse of the converter's prefix map)."""
    from mmsam3.utils.sam3_checkpoint import PREFIX_MAP
    for src, dst in PREFIX_MAP:
        if our_name.startswith(dst):
            return src + our_name[len(dst):]
    raise KeyError(our_name)


# -------------------------------------------------------------------------------------- inputs
def make_inputs(seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    images = torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1
    samples = []
    for i in range(2):
        prompts = [p for p in PROMPTS if p[0] == i]
        gts = [t for t in GT if t[0] == i]
        masks = np.zeros((len(gts), SIZE, SIZE), np.uint8)
        for k, (_, _, (x1, y1, x2, y2)) in enumerate(gts):
            masks[k, int(y1):int(y2), int(x1):int(x2)] = 1
        sample = DetDataSample(metainfo=dict(
            texts=[p[1] for p in prompts], prompt_labels=[p[2] for p in prompts],
            prompt_boxes=[None if p[3] is None else torch.tensor(p[3]) for p in prompts],
            prompt_box_labels=[None if p[4] is None else torch.tensor(p[4]) for p in prompts],
            img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
            scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([t[2] for t in gts]), labels=torch.tensor([t[1] for t in gts]),
            masks=BitmapMasks(masks, SIZE, SIZE))
        samples.append(sample)
    return images, samples


def official_batch():
    """FindStage, geometric prompt and loss targets for ``PROMPTS`` as the official collator
    would build them (boxes normalised cxcywh, sequence first)."""
    from sam3.model.box_ops import box_cxcywh_to_xyxy
    from sam3.model.data_misc import FindStage
    from sam3.model.geometry_encoders import Prompt

    def to_cxcywh(b):
        b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) / SIZE
        return torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], -1)

    texts = list(dict.fromkeys(p[1] for p in PROMPTS))
    find_input = FindStage(
        img_ids=torch.tensor([p[0] for p in PROMPTS]),
        text_ids=torch.tensor([texts.index(p[1]) for p in PROMPTS]),
        input_boxes=None, input_boxes_mask=None, input_boxes_label=None, input_points=None,
        input_points_mask=None)
    n_box = max(len(p[3]) if p[3] else 0 for p in PROMPTS)
    bs = len(PROMPTS)
    box_emb = torch.zeros(n_box, bs, 4)
    box_mask = torch.ones(bs, n_box, dtype=torch.bool)
    box_lab = torch.zeros(n_box, bs, dtype=torch.long)
    for j, p in enumerate(PROMPTS):
        if p[3]:
            box_emb[:len(p[3]), j] = to_cxcywh(p[3])
            box_lab[:len(p[3]), j] = torch.tensor(p[4])
            box_mask[j, :len(p[3])] = False
    geo = Prompt(box_embeddings=box_emb, box_mask=box_mask, box_labels=box_lab)

    per_prompt = [[t for t in GT if t[0] == p[0] and t[1] == p[2]] for p in PROMPTS]
    counts = [len(x) for x in per_prompt]
    boxes = torch.cat([to_cxcywh([t[2] for t in x]) if x else torch.zeros(0, 4)
                       for x in per_prompt])
    padded = torch.zeros(bs, max(counts), 4)
    ids = torch.full((bs, max(counts)), -1, dtype=torch.long)
    masks = torch.zeros(len(boxes), SIZE, SIZE, dtype=torch.bool)
    k = 0
    for j, x in enumerate(per_prompt):
        padded[j, :len(x)] = boxes[k:k + len(x)]
        ids[j, :len(x)] = torch.arange(k, k + len(x))
        for t in x:
            x1, y1, x2, y2 = (int(v) for v in t[2])
            masks[k, y1:y2, x1:x2] = True
            k += 1
    targets = dict(
        boxes=boxes, boxes_xyxy=box_cxcywh_to_xyxy(boxes), boxes_padded=padded,
        num_boxes=torch.tensor(counts), is_exhaustive=torch.ones(bs, dtype=torch.bool),
        object_ids_padded=ids, positive_map=boxes.new_ones(len(boxes), 1), masks=masks,
        is_valid_mask=torch.ones(len(boxes), dtype=torch.bool))
    return texts, find_input, geo, targets


# ------------------------------------------------------------------------------------ forwards
def run_official_train(official, images, with_targets):
    """``Sam3Image.forward`` for one find stage, returning the raw output dict (with the in-model
    o2o matching when ``with_targets``) plus the tensors whose gradients are compared."""
    texts, find_input, geo, targets = official_batch()
    images = images.clone().requires_grad_(True)
    backbone_out = {'img_batch_all_stages': images}
    backbone_out.update(official.backbone.forward_image(images))
    backbone_out.update(official.backbone.forward_text(texts, device=images.device))
    backbone_out['language_features'].retain_grad()
    # The official forward reads the targets through `back_convert(BatchedFindTarget)`; ours are
    # already in the converted layout.
    official.back_convert = lambda t: t
    if not with_targets:
        official._compute_matching = lambda out, tgt: None
    try:
        out = official.forward_grounding(backbone_out=backbone_out, find_input=find_input,
                                         find_target=targets, geometric_prompt=geo.clone())
    finally:
        official.__dict__.pop('back_convert', None)
        official.__dict__.pop('_compute_matching', None)
    return out, targets, dict(image=images, text=backbone_out['language_features'])


def official_stacks(out):
    """Official output dict -> our layout: ``(L, B, 2Q, .)`` stacks, o2o half first."""
    layers = list(out['aux_outputs']) + [out]
    cat = lambda k: torch.stack([torch.cat([d[k], d[k + '_o2m']], 1) for d in layers])  # noqa
    return dict(
        logits=cat('pred_logits'), boxes=cat('pred_boxes'),
        presence=torch.stack([d['presence_logit_dec'] for d in layers]),
        pred_masks=torch.cat([out['pred_masks'], out['pred_masks_o2m']], 1),
        semantic_seg=out['semantic_seg'])


@contextlib.contextmanager
def keep_text_features(ours, captured):
    """Record the text tower's output (``(N, L, C)``, one row per distinct phrase) with its
    gradient in ``captured['text']``, as ``(L, N, C)`` like the official model's."""
    encode_texts = ours.encode_texts

    def encode_and_keep(texts):
        feats, mask = encode_texts(texts)
        seq_first = feats.transpose(0, 1)
        seq_first.retain_grad()
        captured['text'] = seq_first
        return seq_first.transpose(0, 1), mask

    ours.encode_texts = encode_and_keep
    try:
        yield captured
    finally:
        del ours.encode_texts


def run_ours_train(ours, images, samples, loss=False):
    """Raw outputs (``_forward``) or the loss dict (``loss``), and the tensors whose gradients
    are compared."""
    captured = dict(image=images.clone().requires_grad_(True))
    with keep_text_features(ours, captured):
        if loss:
            out = ours.loss(captured['image'], samples)
        else:
            out = ours._forward(captured['image'], samples)
    return out, captured


# ---------------------------------------------------------------------------------- comparison
def output_diffs(out, ref):
    assert out['logits'].shape == ref['logits'].shape == (2, len(PROMPTS), 2 * NQ, 1)
    return {k: (out[k] - ref[k]).abs().max().item() for k in ref}


def grad_report(ours, official):
    """Per parameter: (max |g_ours - g_official|, max |g_official|); None-gradients must agree."""
    official_params = dict(official.named_parameters())
    report, mismatched_none = {}, []
    for name, p in ours.named_parameters():
        ref = official_params[official_name(name)]
        if ref.grad is None or not p.requires_grad or p.grad is None:
            # Dead in one implementation: must be dead (or exactly zero) in the other.
            g = p.grad if p.grad is not None else ref.grad
            if g is not None and g.abs().max() > 0:
                mismatched_none.append(name)
            continue
        report[name] = ((p.grad - ref.grad).abs().max().item(), ref.grad.abs().max().item())
    return report, mismatched_none


def module_of(name):
    """Top-level module of a parameter; inside the head, the head's own sub-module."""
    parts = name.split('.')
    return '.'.join(parts[:2]) if parts[0] == 'bbox_head' else parts[0]


def per_module(report):
    """Per top-level module of ours: ``(max |g_ours - g_official|, max |g_official|)`` over all
    its parameters, and the parameter with the worst per-tensor relative difference."""
    modules = {}
    for name, (diff, scale) in report.items():
        top = module_of(name)
        m = modules.setdefault(top, dict(max_diff=0.0, max_grad=0.0, worst=(0.0, '')))
        m['max_diff'] = max(m['max_diff'], diff)
        m['max_grad'] = max(m['max_grad'], scale)
        if diff / max(scale, 1e-12) > m['worst'][0]:
            m['worst'] = (diff / max(scale, 1e-12), name)
    for m in modules.values():
        m['rel'] = m['max_diff'] / max(m['max_grad'], 1e-12)
    return modules


def check_grads(ours, official, captured, ref_tensors):
    report, mismatched_none = grad_report(ours, official)
    assert not mismatched_none, f'gradient only on one side: {mismatched_none}'
    modules = per_module(report)
    # Every component takes part in training and receives a gradient.
    assert set(modules) >= {'backbone', 'neck', 'text_encoder', 'geometry_encoder', 'encoder',
                            'decoder', 'bbox_head.scoring_head', 'bbox_head.mask_head'}, modules
    bad = {}
    for name, (diff, scale) in report.items():
        module_scale = modules[module_of(name)]['max_grad']
        if scale <= NOISE * module_scale:
            # Mathematically zero gradient (e.g. the boxRPB MLPs' output bias: a per-head
            # constant added to attention logits, which softmax ignores): both sides must be
            # at rounding-noise level.
            if diff > NOISE * module_scale:
                bad[name] = (diff, scale)
        elif diff > GRAD_RTOL * scale:
            bad[name] = (diff, scale)
    assert not bad, f'parameter gradients differ (diff, scale): {bad}\nper module: {modules}'
    # Gradients w.r.t. the input image and the text features (text encoder output, (L, N, C)).
    inputs = {}
    for k in ('image', 'text'):
        g, r = captured[k].grad, ref_tensors[k].grad
        assert g is not None and r is not None and r.abs().max() > 0, k
        inputs[k] = ((g - r).abs().max() / r.abs().max()).item()
    assert max(inputs.values()) <= GRAD_RTOL, inputs
    return modules, inputs


# -------------------------------------------------------------------------------------- tests
@pytest.fixture(scope='module')
def pair(bpe_path):
    torch.manual_seed(0)
    return build_pair(bpe_path)


@pytest.mark.requires_official
def test_train_outputs_and_grads_match_official(pair):
    """(a) Outputs of every decoder layer (o2o + o2m) and gradients of a random linear
    functional of all of them."""
    official, ours = pair
    official.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    images, samples = make_inputs()
    raw, _, ref_tensors = run_official_train(official, images, with_targets=False)
    ref = official_stacks(raw)
    out, captured = run_ours_train(ours, images, samples)
    diffs = output_diffs(out, ref)
    assert max(diffs.values()) <= OUT_ATOL, diffs
    # The o2m half really differs from the o2o half (DAC active), boxes are not saturated.
    assert (ref['logits'][:, :, :NQ] - ref['logits'][:, :, NQ:]).abs().max() > 1e-3
    assert ref['boxes'].min() > 1e-3 and ref['boxes'].max() < 1 - 1e-3

    functional = random_linear_functional(ref, seed=7)
    functional(ref).backward()
    functional(out).backward()
    modules, inputs = check_grads(ours, official, captured, ref_tensors)
    print('outputs', diffs, '\ngrads per module', modules, '\ninput grads', inputs)


@pytest.mark.requires_official
def test_train_loss_and_grads_match_official(pair, monkeypatch):
    """(b) The training loss: ``SAM3.loss`` (targets from ``gt_instances``) against the official
    RF100-VL loss wrapper on the official model's own outputs and matching."""
    from tests.test_models.test_losses.test_sam3_criterion import (_import_official_losses,
                                                                   build_official_wrapper)
    ns = _import_official_losses()
    monkeypatch.setattr(ns.loss_fns, 'sigmoid_focal_loss',
                        functools.partial(ns.loss_fns.sigmoid_focal_loss, triton=False))
    monkeypatch.setattr(torch.distributed, 'all_reduce', lambda *args, **kwargs: None)

    official, ours = pair
    official.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    images, samples = make_inputs()
    raw, targets, ref_tensors = run_official_train(official, images, with_targets=True)
    wrapper = build_official_wrapper(ns, with_masks=True, pad_n_queries=NQ)
    ref_losses = wrapper(ns.SAM3Output([[raw]]), [targets])
    ref_total = ref_losses['core_loss']
    ref_value = ref_total.detach().item()

    losses, captured = run_ours_train(ours, images, samples, loss=True)
    total = sum(losses.values())
    assert math.isfinite(ref_value) and ref_value > 0
    assert abs(total.item() - ref_value) <= 1e-5 * abs(ref_value), (total.item(), ref_value)
    assert losses['loss_presence'].item() > 0 and losses['loss_mask'].item() > 0
    ref_total.backward()
    total.backward()
    modules, inputs = check_grads(ours, official, captured, ref_tensors)
    print('loss', total.item(), ref_value, '\ngrads per module', modules,
          '\ninput grads', inputs)
