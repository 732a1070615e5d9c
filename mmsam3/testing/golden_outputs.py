"""Seeded recipes for the golden-output files in ``tests/data/golden`` and their comparison.

Each recipe builds part of the tiny SAM 3 (``configs/_base_/models/sam3_tiny.py``) with weights
drawn from a seed, runs it on seeded inputs and returns ``{name: tensor}``:

- ``vit``: the image trunk on a (1, 3, 168, 168) image;
- ``fpn``: the neck on a (1, 64, 12, 12) map;
- ``text_encoder``: the text tower on token ids (no BPE file needed);
- ``decoder``: the DETR decoder on seeded memory and prompt tokens (eval mode);
- ``sam3_tiny``: the whole detector's ``predict`` (scores, boxes, labels) on two images and
  three prompts (text, text + exemplar boxes), plus the output of every component inside it,
  recorded by forward hooks, so a mismatch names the first stage that moved.

Weights come from :func:`component_seed`, which depends on the seed and the component's class
name only, never on where the component sits in the detector or on state-dict key names. A
golden file keeps, per output, its shape, mean, mean absolute value and up to
``NUM_SAMPLES`` evenly spaced elements (a few KB), plus a fingerprint of the seeded inputs that
tells a change of torch's random generator apart from a change of the model.

Regenerate after an intended numerical change with ``python tests/data/golden/make_golden.py``.
"""
import json
import os.path as osp
import zlib
from typing import Callable, Dict

import numpy as np
import torch
from torch import Tensor, nn

from .random_weights import randomize_parameters
from .tiny_model import tiny_model_cfg

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GOLDEN_DIR = osp.join(_REPO, 'tests', 'data', 'golden')
NUM_SAMPLES = 128  # per output; seeded inputs keep 16 as their fingerprint
ATOL = RTOL = 1e-5

# Components of the detector whose parameters get their own seed, by class name.
COMPONENT_TYPES = ('SAM3ViT', 'SAM3FPN', 'SAM3TextEncoder', 'SAM3GeometryEncoder',
                   'SAM3FusionEncoder', 'SAM3Decoder', 'SAM3ScoringHead', 'SAM3MaskHead')
SOT, EOT = 49406, 49407  # CLIP start / end of text ids


def component_seed(type_name: str, seed: int) -> int:
    """The weight seed of a component: a 32-bit hash of its class name and ``seed``."""
    return zlib.crc32(f'{type_name}:{seed}'.encode())


def _build_seeded(cfg, seed: int) -> nn.Module:
    from mmdet.registry import MODELS

    module = MODELS.build(cfg)
    randomize_parameters(module, component_seed(type(module).__name__, seed))
    return module.eval()


def seed_detector_weights(model: nn.Module, seed: int) -> None:
    """Give every component of a detector the weights it gets on its own (same seed).

    Raises ``ValueError`` naming any parameter that lies outside the components of
    ``COMPONENT_TYPES`` (a new part of the model needs a place in the recipe).
    """
    covered = set()
    for prefix, module in model.named_modules():
        if type(module).__name__ in COMPONENT_TYPES:
            randomize_parameters(module, component_seed(type(module).__name__, seed))
            covered.update(f'{prefix}.{n}' for n, _ in module.named_parameters())
    left = [n for n, _ in model.named_parameters() if n not in covered]
    if left:
        raise ValueError(f'parameters outside {COMPONENT_TYPES}: {left[:8]}; add their module '
                         'to COMPONENT_TYPES and regenerate the golden files')


def _inputs(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + 1000)


def vit_outputs(seed: int = 0) -> Dict[str, Tensor]:
    cfg = tiny_model_cfg()
    vit = _build_seeded(cfg.backbone, seed)
    img = torch.randn(1, 3, 168, 168, generator=_inputs(seed))
    with torch.no_grad():
        feats = vit(img)
    return {'input.image': img, **{f'vit.{i}': f for i, f in enumerate(feats)}}


def fpn_outputs(seed: int = 0) -> Dict[str, Tensor]:
    cfg = tiny_model_cfg()
    fpn = _build_seeded(cfg.neck, seed)
    feat = torch.randn(1, cfg.neck.in_channels, 12, 12, generator=_inputs(seed))
    with torch.no_grad():
        levels = fpn((feat, ))
    return {'input.feat': feat, **{f'fpn.{i}': f for i, f in enumerate(levels)}}


def text_encoder_outputs(seed: int = 0) -> Dict[str, Tensor]:
    cfg = tiny_model_cfg()
    encoder = _build_seeded(cfg.text_encoder, seed)
    g = _inputs(seed)
    ids = torch.zeros(3, 32, dtype=torch.long)
    for row, length in enumerate((1, 5, 30)):  # 30 + SOT / EOT fills the context
        body = torch.randint(1, SOT, (length, ), generator=g)
        ids[row, :length + 2] = torch.cat([body.new_tensor([SOT]), body, body.new_tensor([EOT])])
    with torch.no_grad():
        feats, pad_mask = encoder(ids)
    return {'input.token_ids': ids, 'text_encoder.feats': feats,
            'text_encoder.pad_mask': pad_mask}


def decoder_outputs(seed: int = 0) -> Dict[str, Tensor]:
    cfg = tiny_model_cfg()
    decoder = _build_seeded(cfg.decoder, seed)
    g = _inputs(seed)
    c, (h, w), bs, num_prompt = cfg.neck.out_channels, (12, 12), 2, 6
    memory = torch.randn(h * w, bs, c, generator=g)
    memory_pos = torch.randn(h * w, bs, c, generator=g)
    prompt = torch.randn(num_prompt, bs, c, generator=g)
    prompt_mask = torch.zeros(bs, num_prompt, dtype=torch.bool)
    prompt_mask[1, 4:] = True  # the second prompt is two tokens shorter
    with torch.no_grad():
        out = decoder(memory, memory_pos, (h, w), prompt, prompt_mask)
    result = {'input.memory': memory, 'input.prompt': prompt}
    result.update({f'decoder.{k}': v for k, v in out.items() if isinstance(v, Tensor)})
    return result


def _flatten(prefix: str, value, out: Dict[str, Tensor]) -> None:
    if isinstance(value, Tensor):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(f'{prefix}.{k}', v, out)
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _flatten(f'{prefix}.{i}', v, out)


def sam3_tiny_outputs(seed: int = 0, bpe_path: str = None) -> Dict[str, Tensor]:
    """The whole tiny detector: ``predict`` results and each component's output on the way."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample

    from .official_sam3 import BPE_PATH

    cfg = tiny_model_cfg(bpe_path or BPE_PATH)
    cfg.test_cfg = dict(score_thr=0.0, max_per_prompt=-1, max_per_img=-1, with_masks=False)
    model = MODELS.build(cfg)
    seed_detector_weights(model, seed)
    model.eval()

    captured: Dict[str, Tensor] = {}
    handles = []
    for _, module in model.named_modules():
        name = type(module).__name__
        if name in COMPONENT_TYPES:
            handles.append(module.register_forward_hook(
                lambda m, args, output, name=name: _flatten(name, output, captured)))
    size = 168
    images = torch.randn(2, 3, size, size, generator=_inputs(seed))
    meta = dict(img_shape=(size, size), ori_shape=(size, size), batch_input_shape=(size, size),
                scale_factor=(1.0, 1.0))
    samples = [
        DetDataSample(metainfo=dict(meta, texts=['red apple', 'a dog'], prompt_labels=[0, 1],
                                    prompt_boxes=[None, torch.tensor([[20., 30., 90., 120.]])],
                                    prompt_box_labels=[None, torch.tensor([1])])),
        DetDataSample(metainfo=dict(meta, texts=['cat'], prompt_labels=[2])),
    ]
    try:
        with torch.no_grad():
            results = model.predict(images, samples, rescale=False)
    finally:
        for handle in handles:
            handle.remove()
    out = {'input.images': images}
    for i, sample in enumerate(results):
        out.update(_canonical_predictions(f'predict.{i}', sample.pred_instances))
    out.update(captured)
    return out


def _canonical_predictions(prefix: str, pred) -> Dict[str, Tensor]:
    """Per label: scores sorted, boxes sorted by their coordinates.

    The detector ranks all predictions by score; close scores of different queries could swap
    places under rounding, so the golden file keeps an order that is continuous in the numbers.
    """
    out = {f'{prefix}.label_counts': torch.bincount(pred.labels)}
    for label in pred.labels.unique().tolist():
        keep = pred.labels == label
        boxes = pred.bboxes[keep]
        order = np.lexsort(boxes.numpy().T[::-1])  # x1, then y1, x2, y2
        out[f'{prefix}.label{label}.scores'] = pred.scores[keep].sort(descending=True).values
        out[f'{prefix}.label{label}.bboxes'] = boxes[torch.from_numpy(order)]
    return out


RECIPES: Dict[str, Callable[..., Dict[str, Tensor]]] = dict(
    vit=vit_outputs, fpn=fpn_outputs, text_encoder=text_encoder_outputs,
    decoder=decoder_outputs, sam3_tiny=sam3_tiny_outputs)


def golden_path(name: str) -> str:
    return osp.join(GOLDEN_DIR, f'{name}.npz')


def summarize(outputs: Dict[str, Tensor]) -> Dict[str, dict]:
    """Per output: ``shape`` and either ``exact`` values (small integer / bool tensors) or
    ``sample`` (evenly spaced elements, float32), ``mean`` and ``mean_abs`` (float64)."""
    records = {}
    for key, tensor in outputs.items():
        t = tensor.detach().cpu()
        record = dict(shape=list(t.shape))
        if not t.is_floating_point() and t.numel() <= 4 * NUM_SAMPLES:
            record['exact'] = t.long().flatten().numpy()
        else:
            flat = t.double().flatten()
            num = min(flat.numel(), 16 if key.startswith('input.') else NUM_SAMPLES)
            idx = np.unique(np.linspace(0, max(flat.numel() - 1, 0), num).round().astype(np.int64))
            record['sample'] = flat[idx].numpy().astype(np.float32)
            record['mean'] = float(flat.mean()) if flat.numel() else 0.0
            record['mean_abs'] = float(flat.abs().mean()) if flat.numel() else 0.0
        records[key] = record
    return records


def save_golden(path: str, records: Dict[str, dict]) -> None:
    """Pack ``records`` into three arrays: a json index, all samples, all exact values."""
    index, samples, exact = {}, [], []
    for key, r in records.items():
        entry = {k: v for k, v in r.items() if k not in ('sample', 'exact')}
        for name, store in (('sample', samples), ('exact', exact)):
            if name in r:
                entry[name] = [sum(len(a) for a in store), len(r[name])]
                store.append(r[name])
        index[key] = entry
    np.savez_compressed(
        path, index=np.array(json.dumps(index, sort_keys=True)),
        samples=np.concatenate(samples or [np.zeros(0, np.float32)]).astype(np.float32),
        exact=np.concatenate(exact or [np.zeros(0, np.int64)]).astype(np.int64))


def load_golden(path: str) -> Dict[str, dict]:
    """The records written by :func:`save_golden`."""
    with np.load(path) as f:
        index, samples, exact = json.loads(str(f['index'])), f['samples'], f['exact']
    records = {}
    for key, entry in index.items():
        r = dict(entry)
        for name, store in (('sample', samples), ('exact', exact)):
            if name in entry:
                start, num = entry[name]
                r[name] = store[start:start + num]
        records[key] = r
    return records


def compare(outputs: Dict[str, Tensor], golden: Dict[str, dict]) -> Dict[str, str]:
    """``{key: what differs}`` between fresh ``outputs`` and golden records; empty = same.

    Every output recorded in the golden file must be present; new outputs are ignored. Inputs
    (``input.*``) come first in the report: if they differ, torch's random generator changed
    and the differences after them say nothing about the model.
    """
    fresh = summarize(outputs)
    problems = {}
    for key in sorted(golden, key=lambda k: (not k.startswith('input.'), k)):
        ref, got = golden[key], fresh.get(key)
        if got is None:
            problems[key] = 'missing from the outputs'
        elif list(got['shape']) != list(ref['shape']):
            problems[key] = f'shape {tuple(got["shape"])} != golden {tuple(ref["shape"])}'
        elif 'exact' in ref:
            if 'exact' not in got or not np.array_equal(got['exact'], ref['exact']):
                problems[key] = 'integer / bool values differ'
        else:
            a, b = got['sample'].astype(np.float64), ref['sample'].astype(np.float64)
            over = np.abs(a - b) - (ATOL + RTOL * np.abs(b))
            mean_err = max(abs(got['mean'] - ref['mean']), abs(got['mean_abs'] - ref['mean_abs']))
            if (over.size and over.max() > 0) or mean_err > ATOL + RTOL * ref['mean_abs']:
                problems[key] = (f'max |diff| {np.abs(a - b).max():.3g} over the samples, '
                                 f'{mean_err:.3g} of the means (tolerance {ATOL:g} + {RTOL:g} |x|)')
        if key.startswith('input.') and key in problems:
            problems[key] += ' (the seeded inputs changed: torch random generator?)'
    return problems
