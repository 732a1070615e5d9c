"""SAM 3 checkpoints in and out of mmsam3: Meta's layouts, transformers' layouts, the checks.

Source layouts (:data:`SOURCE_FORMATS`, found by :func:`detect_format`):

* ``sam3``: Meta's ``sam3.pt`` (the video model: ``detector.*`` = the image model plus the
  tracker's neck copy ``sam2_convs``, and ``tracker.*``), or an image model's own ``state_dict()``.
* ``sam3.1``: Meta's ``sam3.1_multiplex.pt`` (SAM 3.1). Its detector is SAM 3's image model
  whose neck (``Sam3TriViTDetNeck``) builds three levels (no x0.5 ``convs.3``) and carries two
  more copies, ``interactive_convs`` (click-refinement head) and ``propagation_convs``
  (multiplex tracker); ``tracker.*`` is the multiplex tracker. Meta's loader also renames an
  internal naming (``sam3_model.`` -> ``detector.``, ``sam2_predictor.`` -> ``tracker.``), so
  both are read. The layout was established from Meta's public code, see docs/checkpoints.md.
* ``hf`` / ``hf-litetext``: transformers' ``Sam3Model`` / ``Sam3LiteTextModel``
  (``model.safetensors``, or a folder with ``config.json``); see :mod:`.sam3_checkpoint_hf`.
  A ``Sam3VideoModel`` (``detector_model.*``, ``tracker_neck.*``, ``tracker_model.*``) reads
  as ``hf`` with its interactive parts kept and its memory parts set aside (``video_tracker``).
* ``hf-tracker``: transformers' ``Sam3TrackerModel`` (clicks on images: the ViT, the tracker
  neck, the prompt encoder and mask decoder), into ``backbone``, ``tracker_neck`` and
  ``interactive_head``.

mmsam3's modules keep Meta's parameter names inside each component, so Meta's layouts convert by
prefix (:data:`PREFIX_MAP`, :data:`TRACKER_MAP`) plus a list of entries the image model does not
use (:data:`DROPPED`): the complex RoPE tables ``*.attn.freqs_cis`` (mmsam3 computes RoPE from
the token grid with cos/sin).

Interactive segmentation (clicks, Meta's ``predict_inst``): the tracker neck (``sam2_convs``;
SAM 3.1: ``interactive_convs``) becomes ``tracker_neck.convs``, and the tracker's prompt encoder,
mask decoder and ``no_mem_embed`` (SAM 3.1: ``interactive_sam_*``, ``interactivity_no_mem_embed``)
become ``interactive_head.*`` (:data:`TRACKER_MAP`). The rest of ``tracker.*`` (memory encoder,
memory attention, object pointers; SAM 3.1's multiplex tracker and ``propagation_convs``) is
video-only: it is not part of the model but is returned unchanged (``report['video_tracker']``),
kept by ``sam3_to_mmsam3.py`` in the checkpoint's ``video_tracker`` entry and written back by
``mmsam3_to_sam3.py``, so ``sam3.pt`` round-trips bit-exactly.

Every conversion checks that each tensor is finite (:func:`nonfinite_tensors`).
"""
import json
import os.path as osp
import re
from collections import OrderedDict

import torch

from .sam3_checkpoint_hf import (hf_to_mmsam3, hf_tracker_to_mmsam3, mmsam3_to_hf,
                                 mmsam3_to_hf_tracker)

__all__ = [
    'PREFIX_MAP', 'DROPPED', 'TRACKER_MAP', 'VIDEO_TRACKER', 'tracker_layout_of',
    'SOURCE_FORMATS', 'CheckpointConversionError',
    'convert_official_state_dict', 'convert_to_mmsam3', 'detect_format', 'export_official',
    'export_hf', 'export_hf_tracker', 'format_report', 'nonfinite_tensors', 'read_source',
    'official_rope_tables'
]

SOURCE_FORMATS = ('sam3', 'sam3.1', 'hf', 'hf-litetext', 'hf-tracker')

# (official prefix after `detector.`, mmsam3 prefix); first match wins.
PREFIX_MAP = (
    ('backbone.vision_backbone.trunk.', 'backbone.'),
    ('backbone.vision_backbone.convs.', 'neck.convs.'),
    ('backbone.language_backbone.', 'text_encoder.'),
    ('geometry_encoder.', 'geometry_encoder.'),
    ('transformer.encoder.', 'encoder.'),
    ('transformer.decoder.', 'decoder.'),
    ('dot_prod_scoring.', 'bbox_head.scoring_head.'),
    ('segmentation_head.', 'bbox_head.mask_head.'),
)

# (official key pattern, reason): entries that are dropped on purpose.
DROPPED = (
    ('.attn.freqs_cis', 'complex RoPE cache; recomputed from the token grid with cos/sin'),
)

# (layout, official prefix or exact name, mmsam3 prefix or name, what): the interactive
# (click) weights. Names ending in '.' are prefixes, the others exact.
TRACKER_MAP = (
    ('sam3', 'detector.backbone.vision_backbone.sam2_convs.', 'tracker_neck.convs.',
     'tracker neck (sam2_convs -> tracker_neck)'),
    ('sam3', 'tracker.sam_prompt_encoder.', 'interactive_head.prompt_encoder.',
     'interactive head (tracker prompt encoder, mask decoder, no_mem_embed -> interactive_head)'),
    ('sam3', 'tracker.sam_mask_decoder.', 'interactive_head.mask_decoder.',
     'interactive head (tracker prompt encoder, mask decoder, no_mem_embed -> interactive_head)'),
    ('sam3', 'tracker.no_mem_embed', 'interactive_head.no_mem_embed',
     'interactive head (tracker prompt encoder, mask decoder, no_mem_embed -> interactive_head)'),
    ('sam3.1', 'detector.backbone.vision_backbone.interactive_convs.', 'tracker_neck.convs.',
     'SAM 3.1 interactive-head neck (interactive_convs -> tracker_neck)'),
    ('sam3.1', 'tracker.model.interactive_sam_prompt_encoder.',
     'interactive_head.prompt_encoder.', 'SAM 3.1 interactive head (-> interactive_head)'),
    ('sam3.1', 'tracker.model.interactive_sam_mask_decoder.', 'interactive_head.mask_decoder.',
     'SAM 3.1 interactive head (-> interactive_head)'),
    ('sam3.1', 'tracker.model.interactivity_no_mem_embed', 'interactive_head.no_mem_embed',
     'SAM 3.1 interactive head (-> interactive_head)'),
)

# (official prefix, what): video-only entries, kept aside unchanged (``video_tracker``).
VIDEO_TRACKER = (
    ('detector.backbone.vision_backbone.propagation_convs.',
     'SAM 3.1 multiplex tracker neck (video only; kept unchanged in video_tracker)'),
    ('tracker.', 'video tracker: memory encoder / attention, object pointers (video only; kept '
     'unchanged in video_tracker)'),
)

# Meta's internal names, renamed by its SAM 3.1 loader (`build_sam3_multiplex_video_predictor`).
_INTERNAL_PREFIXES = (('sam3_model.', 'detector.'), ('sam2_predictor.', 'tracker.'))


class CheckpointConversionError(ValueError):
    """A checkpoint cannot be converted; the message names the file or tensor and the fix."""


def _unwrap(checkpoint):
    if isinstance(checkpoint, dict):
        for key in ('model', 'state_dict'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
    return checkpoint


def _internal_to_public(key):
    for src, dst in _INTERNAL_PREFIXES:
        if key.startswith(src):
            return dst + key[len(src):]
    return key


def convert_official_state_dict(checkpoint):
    """Convert a Meta SAM 3 / SAM 3.1 state dict (``sam3.pt`` / ``sam3.1_multiplex.pt``).

    Args:
        checkpoint (dict): the loaded file; a ``model`` / ``state_dict`` wrapper is unwrapped. Keys
            may carry the ``detector.`` prefix or not (an image model's own ``state_dict()``).

    Returns:
        tuple[OrderedDict, dict]: the converted state dict and a report
        ``{'converted': int, 'dropped': {reason: count}, 'interactive': {what: count},
        'video_tracker': OrderedDict(official key: tensor), 'unknown': [keys]}``. Unknown keys
        are not converted; callers decide whether that is an error.
    """
    state = _unwrap(checkpoint)
    converted = OrderedDict()
    dropped, unknown, interactive, video = {}, [], {}, OrderedDict()
    for key, value in state.items():
        public = _internal_to_public(key)
        reason = next((why for pat, why in DROPPED if pat in public or public.startswith(pat)),
                      None)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        hit = _tracker_name(public)
        if hit is not None:
            converted[hit[0]] = value
            interactive[hit[1]] = interactive.get(hit[1], 0) + 1
            continue
        why = next((w for pre, w in VIDEO_TRACKER if public.startswith(pre)), None)
        if why is not None:
            video[public] = value
            dropped[why] = dropped.get(why, 0) + 1
            continue
        name = public[len('detector.'):] if public.startswith('detector.') else public
        for src, dst in PREFIX_MAP:
            if name.startswith(src):
                if torch.is_tensor(value) and value.is_complex():
                    raise CheckpointConversionError(
                        f'unexpected complex tensor {key}; mmsam3 holds no complex parameters')
                converted[dst + name[len(src):]] = value
                break
        else:
            unknown.append(key)
    report = dict(converted=len(converted), dropped=dropped, interactive=interactive,
                  video_tracker=video, unknown=unknown)
    return converted, report


def _tracker_name(public):
    """``(mmsam3 name, what)`` of an interactive weight in Meta's layouts, else None."""
    for _, official, mm, what in TRACKER_MAP:
        if official.endswith('.') and public.startswith(official):
            return mm + public[len(official):], what
        if public == official:
            return mm, what
    return None


def tracker_layout_of(fmt):
    """The interactive names to write for a source format: ``'sam3.1'`` or ``'sam3'``."""
    return 'sam3.1' if fmt == 'sam3.1' else 'sam3'


def _export_tracker_name(key, layout):
    for lay, official, mm, _ in TRACKER_MAP:
        if lay != layout:
            continue
        if mm.endswith('.') and key.startswith(mm):
            return official + key[len(mm):]
        if key == mm:
            return official
    return None


# ------------------------------------------------------------------------------------- reading
def _load_torch(path):
    from .checkpoint_integrity import checkpoint_read_error

    problem = checkpoint_read_error(path)
    if problem is not None:
        raise CheckpointConversionError(f'cannot read {path}: {problem}.')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointConversionError(
            f'cannot read {path} as a plain state dict ({type(exc).__name__}: {first[:200]}); '
            'a SAM 3 checkpoint is a dict of tensors saved with torch.save.') from None


def _load_safetensors(path):
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointConversionError(
            f'{path} is a safetensors file: pip install safetensors') from None
    try:
        return load_file(path, device='cpu')
    except Exception as exc:
        raise CheckpointConversionError(
            f'cannot read {path}: it is not a complete safetensors file ({exc}).') from None


def _load_hf_folder(folder):
    index = osp.join(folder, 'model.safetensors.index.json')
    single = osp.join(folder, 'model.safetensors')
    if osp.isfile(single):
        state = _load_safetensors(single)
    elif osp.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        state = {}
        for shard in shards:
            state.update(_load_safetensors(osp.join(folder, shard)))
    elif osp.isfile(osp.join(folder, 'pytorch_model.bin')):
        state = _load_torch(osp.join(folder, 'pytorch_model.bin'))
    else:
        raise CheckpointConversionError(
            f'{folder} is a folder without model.safetensors, model.safetensors.index.json or '
            'pytorch_model.bin; pass the checkpoint file itself.')
    return state


def read_source(path):
    """Read a checkpoint file or a transformers folder.

    Returns:
        tuple[dict, dict | None]: the state dict (wrappers removed) and the transformers
        ``config.json`` content when there is one (next to the file, or in the folder).

    Raises:
        CheckpointConversionError: missing, unreadable, truncated or not a state dict.
    """
    if not osp.exists(path):
        raise CheckpointConversionError(f'cannot read {path}: it does not exist.')
    folder = path if osp.isdir(path) else osp.dirname(path)
    if osp.isdir(path):
        state = _load_hf_folder(path)
    elif path.endswith('.safetensors'):
        state = _load_safetensors(path)
    else:
        state = _unwrap(_load_torch(path))
    if not isinstance(state, dict) or not state:
        raise CheckpointConversionError(f'{path} holds no state dict (a dict of tensors).')
    config = None
    cfg_path = osp.join(folder, 'config.json')
    if osp.isfile(cfg_path) and (osp.isdir(path) or path.endswith('.safetensors')):
        try:
            with open(cfg_path) as f:
                config = json.load(f)
        except (OSError, ValueError) as exc:
            raise CheckpointConversionError(f'cannot read {cfg_path}: {exc}') from None
    return state, config


# ----------------------------------------------------------------------------------- detection
_FOREIGN_HINTS = (
    ('image_encoder.trunk.', 'a SAM 2 checkpoint'),
    ('image_encoder.neck.', 'a SAM 2 checkpoint'),
    ('memory_attention.', 'a SAM 2 checkpoint'),
    ('image_encoder.blocks.', 'a SAM 1 (segment-anything) checkpoint'),
    ('mask_decoder.transformer.', 'a SAM 1 / SAM 2 checkpoint'),
    ('backbone.blocks.', 'an mmsam3 checkpoint (already converted)'),
    ('backbone.layer1.', 'an mmdet / torchvision ResNet detector'),
)


def detect_format(state, config=None):
    """Which of :data:`SOURCE_FORMATS` ``state`` is in.

    Raises:
        CheckpointConversionError: none matches; the message says what it looks like instead.
    """
    model_type = (config or {}).get('model_type')
    if model_type == 'sam3_lite_text':
        return 'hf-litetext'
    if model_type == 'sam3_tracker':
        return 'hf-tracker'
    if model_type in ('sam3', 'sam3_video'):
        return 'hf'
    keys = [_internal_to_public(k) for k in state]
    if (any(k.endswith('prompt_encoder.point_embed.weight') for k in keys) and
            not any('detr_decoder.' in k for k in keys)):
        return 'hf-tracker'
    names = [k[len('detector_model.'):] if k.startswith('detector_model.') else k for k in keys]
    if any(k.startswith('vision_encoder.backbone.') for k in names):
        lite = any(k.startswith('text_encoder.layers.') or
                   k.startswith('text_encoder.embeddings.position_embedding.position_embedding')
                   for k in names)
        return 'hf-litetext' if lite else 'hf'
    meta = [k[len('detector.'):] if k.startswith('detector.') else k for k in keys]
    if any(k.startswith('backbone.vision_backbone.trunk.') for k in meta):
        tri = any(k.startswith(('backbone.vision_backbone.interactive_convs.',
                                'backbone.vision_backbone.propagation_convs.')) for k in meta)
        return 'sam3.1' if tri else 'sam3'
    hint = next((what for pre, what in _FOREIGN_HINTS if any(k.startswith(pre) for k in keys)),
                None)
    heads = sorted({k.split('.')[0] for k in keys})[:8]
    raise CheckpointConversionError(
        'not a SAM 3 checkpoint in a known layout (Meta sam3.pt / sam3.1_multiplex.pt, '
        f'transformers Sam3Model / Sam3LiteTextModel){": it looks like " + hint if hint else ""}; '
        f'its keys start with {", ".join(heads)}. Name the layout with --src-format if it is '
        'one of ' + ', '.join(SOURCE_FORMATS) + '.')


# ------------------------------------------------------------------------------------- checks
def nonfinite_tensors(state):
    """Names of floating / complex tensors of ``state`` holding NaN or Inf, with counts."""
    bad = []
    for key, value in state.items():
        if torch.is_tensor(value) and (value.is_floating_point() or value.is_complex()):
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                bad.append((key, int((~finite).sum())))
    return bad


def _check_finite(state, allow_nonfinite, where):
    bad = nonfinite_tensors(state)
    if bad and not allow_nonfinite:
        listed = ', '.join(f'{k} ({n} values)' for k, n in bad[:5])
        more = f' and {len(bad) - 5} more' if len(bad) > 5 else ''
        raise CheckpointConversionError(
            f'{where} holds non-finite values (NaN / Inf) in {listed}{more}; refusing to convert '
            'it. Pass --allow-nonfinite to convert it anyway and report them.')
    return bad


def convert_to_mmsam3(state, src_format=None, config=None, allow_nonfinite=False, where='input'):
    """Any source layout -> mmsam3 state dict.

    Args:
        state (dict): from :func:`read_source`.
        src_format (str | None): one of :data:`SOURCE_FORMATS`, or None to detect it.
        config (dict | None): transformers ``config.json`` content, if any.
        allow_nonfinite (bool): report non-finite tensors instead of refusing them.
        where (str): what to call the input in messages (its path).

    Returns:
        tuple[OrderedDict, dict]: the state dict and a report with ``format``, ``total``,
        ``converted``, ``dropped``, ``filled``, ``unknown`` and ``nonfinite``.

    Raises:
        CheckpointConversionError: unknown layout, unknown keys, a non-finite tensor.
    """
    fmt = src_format or detect_format(state, config)
    if fmt not in SOURCE_FORMATS:
        raise CheckpointConversionError(
            f'unknown source format {fmt!r}; choose from {", ".join(SOURCE_FORMATS)}')
    bad = _check_finite(state, allow_nonfinite, where)
    if fmt in ('sam3', 'sam3.1'):
        out, report = convert_official_state_dict(state)
        report['filled'] = {}
    elif fmt == 'hf-tracker':
        out, report = hf_tracker_to_mmsam3(state)
    else:
        out, report = hf_to_mmsam3(state, lite_text=fmt == 'hf-litetext')
    report.update(format=fmt, total=len(state), nonfinite=bad)
    if not out:
        raise CheckpointConversionError(
            f'{where} converted to nothing as {fmt}: not a SAM 3 checkpoint of that layout.')
    if report['unknown']:
        raise CheckpointConversionError(
            f'{len(report["unknown"])} keys of {where} are not part of the {fmt} image-model '
            f'layout ({", ".join(report["unknown"][:5])}'
            f'{" ..." if len(report["unknown"]) > 5 else ""}); refusing to write a partial '
            'checkpoint. If this is another layout, name it with --src-format.')
    return out, report


# ------------------------------------------------------------------------------------- export
def official_rope_tables(embed_dims=1024, num_heads=16, img_size=1008, patch_size=14,
                         window_size=24, global_att_blocks=(7, 15, 23, 31), depth=32,
                         theta=10000.0):
    """The ``blocks.{i}.attn.freqs_cis`` buffers Meta's ViT registers, bit for bit.

    Meta's model stores RoPE as complex64 ``(L, head_dim / 2)`` tables: ``L`` = 24 x 24 window
    tokens (positions 0..23) or the global grid (72 x 72 at 1008, positions scaled by 24 / 72).
    They are needed only to write Meta's layout (its loader reports them missing otherwise), so
    this is the one place complex numbers are built, with Meta's own operation order.
    """
    head_dim = embed_dims // num_heads
    grid = img_size // patch_size

    def table(end, scale):
        freqs = 1.0 / (theta**(torch.arange(0, head_dim, 4)[:head_dim // 4].float() / head_dim))
        t = torch.arange(end * end, dtype=torch.float32)
        t_x = (t % end).float() * scale
        t_y = torch.div(t, end, rounding_mode='floor').float() * scale
        ax, ay = torch.outer(t_x, freqs), torch.outer(t_y, freqs)
        # Meta's checkpoint stores these tables as complex tensors: the exporter writes them
        # (bit-identical to Meta's, which cos/sin would not be); no mmsam3 model uses them.
        return torch.cat([torch.polar(torch.ones_like(ax), ax),
                          torch.polar(torch.ones_like(ay), ay)], dim=-1)

    window = table(window_size, 1.0)
    glob = table(grid, window_size / grid)
    return {f'blocks.{i}.attn.freqs_cis': (glob if i in global_att_blocks else window).clone()
            for i in range(depth)}


# A neck level's layers in Meta's layout (SAM3FPN's names): any other layer under a neck (the
# LayerNorms of ``SAM3FPN(out_norm=True)``) has no place there.
_NECK_LAYER = re.compile(r'(?:tracker_neck|neck)\.convs\.\d+\.([^.]+)\.')
_OFFICIAL_NECK_LAYERS = frozenset(('dconv_2x2_0', 'dconv_2x2_1', 'dconv_2x2', 'conv_1x1',
                                   'conv_3x3'))


def export_official(state, vit_arch=None, extra=None, tracker_layout='sam3'):
    """mmsam3 state dict -> Meta's ``sam3.pt`` layout (``detector.*``, the interactive head as
    ``tracker.*``).

    Args:
        state (dict): mmsam3 ``SAM3`` state dict.
        vit_arch (dict | None): ``SAM3ViT`` sizes for the RoPE tables (``embed_dims``,
            ``num_heads``, ``img_size``, ``patch_size``, ``window_size``, ``global_att_blocks``);
            default: the official ViT-L at 1008. ``depth`` and the width are read from
            ``state``.
        extra (dict | None): entries copied unchanged where the model has none (the video
            tracker of the original ``sam3.pt``: the checkpoint's ``video_tracker`` entry or
            ``--tracker-from``, so Meta's video predictor gets a complete file).
        tracker_layout (str): names of the interactive weights: ``'sam3'`` (``sam2_convs``,
            ``tracker.sam_*``) or ``'sam3.1'`` (``interactive_convs``,
            ``tracker.model.interactive_sam_*``).

    Returns:
        tuple[OrderedDict, dict]: the official state dict and a report.
    """
    reverse = [(dst, src) for src, dst in PREFIX_MAP]
    out, unknown = OrderedDict(), []
    interactive = 0
    for key, value in state.items():
        layer = _NECK_LAYER.match(key)
        if layer and layer.group(1) not in _OFFICIAL_NECK_LAYERS:
            unknown.append(key)
            continue
        official = _export_tracker_name(key, tracker_layout)
        if official is not None:
            out[official] = value
            interactive += 1
            continue
        for mm, official in reverse:
            if key.startswith(mm):
                out['detector.' + official + key[len(mm):]] = value
                break
        else:
            unknown.append(key)
    arch = dict(embed_dims=1024, num_heads=16, img_size=1008, patch_size=14, window_size=24,
                global_att_blocks=(7, 15, 23, 31))
    arch.update({k: v for k, v in (vit_arch or {}).items() if k in arch})
    if 'backbone.pos_embed' in state:
        arch['embed_dims'] = state['backbone.pos_embed'].shape[-1]
    depth = len({k.split('.')[2] for k in state if k.startswith('backbone.blocks.')})
    trunk = 'detector.backbone.vision_backbone.trunk.'
    for name, table in official_rope_tables(depth=depth, **arch).items():
        out[trunk + name] = table
    copied = 0
    for key, value in (extra or {}).items():
        if key not in out:
            out[key] = value
            copied += 1
    report = dict(converted=len(state) - len(unknown), regenerated=depth, copied=copied,
                  interactive=interactive, unknown=unknown)
    return out, report


def export_hf(state, lite_text=None):
    """mmsam3 state dict -> transformers ``Sam3Model`` (or ``Sam3LiteTextModel``) names.

    ``lite_text`` None: decided by the text encoder's keys.
    """
    if lite_text is None:
        lite_text = not any(k.startswith('text_encoder.encoder.transformer.') for k in state)
    return mmsam3_to_hf(state, lite_text=lite_text)


def export_hf_tracker(state):
    """mmsam3 state dict (with the interactive head) -> transformers ``Sam3TrackerModel``."""
    if not any(k.startswith('interactive_head.') for k in state):
        raise CheckpointConversionError(
            'the checkpoint has no interactive head (interactive_head.*): nothing to write as '
            'a Sam3TrackerModel; use --dst-format hf for the concept model')
    return mmsam3_to_hf_tracker(state)


def format_report(report):
    lines = []
    if 'format' in report:
        lines.append(f'source format {report["format"]}: {report.get("total", "?")} tensors')
    lines.append(f'converted {report["converted"]} tensors')
    for what, count in sorted(report.get('interactive', {}).items()):
        lines.append(f'kept    {count:5d}  {what}')
    for reason, count in sorted(report.get('dropped', {}).items()):
        lines.append(f'dropped {count:5d}  {reason}')
    for reason, count in sorted(report.get('filled', {}).items()):
        lines.append(f'filled  {count:5d}  {reason} (zeros)')
    for key, count in report.get('nonfinite', []):
        lines.append(f'NON-FINITE {key}: {count} values (kept: --allow-nonfinite)')
    if report.get('unknown'):
        lines.append(f'unknown {len(report["unknown"])} (not converted): ' +
                     ', '.join(report['unknown'][:10]) +
                     (' ...' if len(report['unknown']) > 10 else ''))
    return '\n'.join(lines)

