"""Parameters and FLOPs of a SAM 3 config: the image tower, one prompt, and one image in total.

    python tools/analysis_tools/get_flops.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py
    python tools/analysis_tools/get_flops.py CONFIG --shape 1008 1008 --prompts 4

From Python (the numbers of a built model, e.g. a teacher and its compressed student)::

    from get_flops import count_complexity, get_flops   # tools/analysis_tools on sys.path
    report = count_complexity(model, shape=(168, 168), num_prompts=4)
    report.image_flops, report.prompt_flops, report.total_flops

What is measured, on one image of ``H x W`` (default: the backbone's ``img_size``) carrying
``N`` text prompts, each its own phrase, without exemplar boxes:

- image tower: ``model.extract_feat(inputs)``, once per image whatever the number of prompts;
- image terms: ``model.image_terms(feats)``, the prompt stages' parts that depend on the image
  only (the fusion encoder's first self-attention, the pixel decoder's lateral convolutions),
  also once per image;
- per prompt: ``model.forward_prompt_feats(..., image_terms=...)`` with the text tower, divided
  by N: text tower, geometry encoder, fusion encoder, decoder and heads for one prompt;
- total: the three, as an image-once predictor (``SAM3Predictor``) spends them.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``: one multiply-add is 2 FLOPs
(fvcore and mmengine's ``get_model_complexity_info`` count multiply-adds, half these figures).
Matrix products, convolutions and ``scaled_dot_product_attention`` are counted (torch's table
lacks the CPU kernel of the latter; it is added here with torch's own formula); element-wise
operations, norms and softmax are not. Parameters: the image tower's are those of the modules that
run in ``extract_feat``, the prompt stage's those of the other modules that run in ``_forward``,
the total is every parameter of the model (including weights kept only for strict loading).
"""
import argparse
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch.utils import flop_counter

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmsam3  # noqa: E402,F401  (registers modules)


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# Kernels missing from torch's FLOP table, with the formula of their GPU counterparts.
_EXTRA_FLOP_FORMULAS = {}
if hasattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu'):
    _EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = \
        _sdpa_cpu_flops


@dataclass
class ComplexityReport:
    """FLOPs and parameter counts of one image with ``num_prompts`` prompts.

    ``*_attention_flops`` is the part of the FLOPs spent in scaled-dot-product attention.
    ``prompt_*`` figures are per prompt (FLOPs) or of the prompt stage (parameters).
    """
    shape: Tuple[int, int]
    num_prompts: int
    image_flops: int
    total_flops: int
    image_attention_flops: int
    total_attention_flops: int
    image_params: int
    prompt_params: int
    total_params: int
    image_terms_flops: int = 0
    image_terms_attention_flops: int = 0

    @property
    def prompt_flops(self) -> float:
        return (self.total_flops - self.image_flops - self.image_terms_flops) / self.num_prompts

    @property
    def prompt_attention_flops(self) -> float:
        return (self.total_attention_flops - self.image_attention_flops -
                self.image_terms_attention_flops) / self.num_prompts


class _ModulesThatRun:
    """Forward pre-hooks recording which modules of ``model`` run inside the ``with`` block."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.modules = []

    def __enter__(self):
        self.handles = [
            m.register_forward_pre_hook(lambda mod, args: self.modules.append(mod))
            for m in self.model.modules()
        ]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def parameter_ids(self) -> set:
        return {id(p) for m in self.modules for p in m.parameters(recurse=False)}


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """torch's FLOP counter, knowing the CPU attention kernel too (``benchmark.py`` uses it)."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)


def _count(fn, model):
    """Run ``fn()`` under the FLOP counter: (FLOPs, attention FLOPs, ids of used parameters)."""
    counter = flop_counter_mode()
    with _ModulesThatRun(model) as ran, counter, torch.no_grad():
        fn()
    per_op = counter.get_flop_counts().get('Global', {})
    attention = sum(v for op, v in per_op.items() if 'attention' in str(op))
    return counter.get_total_flops(), attention, ran.parameter_ids()


def _prompt_samples(shape: Tuple[int, int], num_prompts: int):
    from mmdet.structures import DetDataSample

    h, w = shape
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
        scale_factor=(1.0, 1.0), texts=[f'object number {i}' for i in range(num_prompts)],
        prompt_labels=list(range(num_prompts))))
    return [sample]


def count_complexity(model: torch.nn.Module, shape: Sequence[int],
                     num_prompts: int = 1) -> ComplexityReport:
    """FLOPs and parameters of ``model`` (an mmsam3 ``SAM3``) on one ``shape = (H, W)`` image.

    ``image_*`` is the image tower, ``image_terms_*`` :meth:`SAM3.image_terms` (the prompt
    stages' parts that depend on the image only, computed once per image), and the rest is per
    prompt. The model is put in eval mode; inputs live on the device of its parameters.
    """
    h, w = (int(s) for s in shape)
    if num_prompts < 1:
        raise ValueError(f'--prompts must be >= 1, got {num_prompts}')
    patch = getattr(getattr(model, 'backbone', None), 'patch_size', 1)
    if h <= 0 or w <= 0 or h % patch or w % patch:
        raise ValueError(f'--shape {h} {w}: height and width must be positive multiples of the '
                         f'patch size {patch} (e.g. {patch * max(1, round(h / patch))})')
    model.eval()
    device = next(model.parameters()).device
    inputs = torch.randn(1, 3, h, w, device=device)
    samples = _prompt_samples((h, w), num_prompts)
    # Parameters by tower: those the image tower uses, and the rest of a forward.
    image_flops, image_attn, image_ids = _count(lambda: model.extract_feat(inputs), model)
    _, _, run_ids = _count(lambda: model._forward(inputs, samples), model)
    # The rest as an image-once predictor spends it: the prompt stages' image-only terms
    # (SAM3.image_terms) once, then each prompt, so the prompt part is linear in the prompts.
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        terms = model.image_terms(feats) if hasattr(model, 'image_terms') else None
    terms_flops, terms_attn = 0, 0
    if terms is not None:
        terms_flops, terms_attn, _ = _count(lambda: model.image_terms(feats), model)
    from mmsam3.models.utils import PromptBatch

    def prompts():
        tensors = PromptBatch.from_data_samples(samples).to_tensors(model.encode_texts, (h, w),
                                                                    device)
        if terms is None:
            return model.forward_prompt_feats(feats, *tensors)
        return model.forward_prompt_feats(feats, *tensors, image_terms=terms)

    prompt_flops, prompt_attn, _ = _count(prompts, model)
    total_flops = image_flops + terms_flops + prompt_flops
    total_attn = image_attn + terms_attn + prompt_attn
    sizes = {id(p): p.numel() for p in model.parameters()}
    return ComplexityReport(
        shape=(h, w), num_prompts=num_prompts, image_flops=image_flops, total_flops=total_flops,
        image_attention_flops=image_attn, total_attention_flops=total_attn,
        image_terms_flops=terms_flops, image_terms_attention_flops=terms_attn,
        image_params=sum(sizes[i] for i in image_ids if i in sizes),
        prompt_params=sum(sizes[i] for i in run_ids - image_ids if i in sizes),
        total_params=sum(sizes.values()))


def build_model(config, cfg_options: Optional[dict] = None, device: str = 'cpu'):
    """Build the ``model`` of a config file (or ``Config``) with mmsam3's modules registered."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model).to(device), cfg


def default_shape(cfg) -> Tuple[int, int]:
    size = cfg.model.get('backbone', {}).get('img_size')
    if not size:
        raise ValueError('the config has no model.backbone.img_size; pass --shape H W')
    return int(size), int(size)


def get_flops(config, shape: Optional[Sequence[int]] = None, num_prompts: int = 1,
              cfg_options: Optional[dict] = None, device: str = 'cpu') -> ComplexityReport:
    """:func:`count_complexity` of the model a config builds (random weights)."""
    model, cfg = build_model(config, cfg_options, device)
    return count_complexity(model, shape or default_shape(cfg), num_prompts)


def _millions(n: float) -> str:
    return f'{n / 1e6:.3f} M'


def _giga(n: float) -> str:
    return f'{n / 1e9:.4f}'


def format_table(report: ComplexityReport, title: str = '') -> str:
    """A Markdown table of the report."""
    h, w = report.shape
    n = report.num_prompts
    rows = [('image tower (extract_feat)', _millions(report.image_params),
             _giga(report.image_flops), _giga(report.image_attention_flops)),
            ('image terms (image_terms, once per image)', '-',
             _giga(report.image_terms_flops), _giga(report.image_terms_attention_flops)),
            ('per prompt', _millions(report.prompt_params), _giga(report.prompt_flops),
             _giga(report.prompt_attention_flops)),
            (f'total, {n} prompt{"s" if n > 1 else ""}', _millions(report.total_params),
             _giga(report.total_flops), _giga(report.total_attention_flops))]
    head = ('stage', 'parameters', 'GFLOPs', 'of which attention')
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    lines = [title] if title else []
    lines.append(f'input: 1 image {h}x{w}, {n} text prompt(s), one phrase each, no exemplar '
                 'boxes; 1 multiply-add = 2 FLOPs')
    for r in [head, tuple('-' * x for x in widths)] + rows:
        lines.append('| ' + ' | '.join(c.ljust(x) for c, x in zip(r, widths)) + ' |')
    lines.append('per-prompt parameters: the modules after the image tower (text tower, '
                 'encoders, decoder, heads); total: every parameter of the model')
    return '\n'.join(lines)


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description='Parameters and FLOPs of a SAM 3 config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: model.backbone.img_size)')
    parser.add_argument('--prompts', type=int, default=1,
                        help='number of text prompts on the image (default 1)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    return parser.parse_args(argv)


def main(argv=None) -> ComplexityReport:
    args = parse_args(argv)
    report = get_flops(args.config, args.shape, args.prompts, args.cfg_options, args.device)
    print(format_table(report, title=f'config: {args.config}'))
    return report


if __name__ == '__main__':
    main()
