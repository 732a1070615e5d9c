"""Write an mmsam3 checkpoint back in Meta's ``sam3.pt`` layout or as a transformers folder.

    # Meta's layout: loads with sam3.build_sam3_image_model(checkpoint_path=...)
    python tools/model_converters/mmsam3_to_sam3.py work_dirs/x/iter_1000.pth sam3_finetuned.pt
    # ... plus the tracker of the original sam3.pt, for Meta's video predictor
    python tools/model_converters/mmsam3_to_sam3.py iter_1000.pth sam3_finetuned.pt \
        --tracker-from sam3.pt
    # transformers: loads with Sam3Model.from_pretrained('sam3_finetuned_hf')
    python tools/model_converters/mmsam3_to_sam3.py iter_1000.pth sam3_finetuned_hf \
        --dst-format hf [--config configs/sam3/sam3_vit-l_zeroshot_coco.py]

Meta's layout gets the detector's weights (``detector.*``), the interactive weights when the
model has them (``tracker_neck`` -> ``sam2_convs``, ``interactive_head`` -> ``tracker.sam_*``,
``tracker.no_mem_embed``; SAM 3.1's names when the checkpoint was converted from SAM 3.1), the
video tracker kept by ``sam3_to_mmsam3.py`` (the checkpoint's ``video_tracker`` entry, or
``--tracker-from``) and the complex RoPE tables that Meta's ViT keeps as buffers, regenerated
bit for bit from the ViT sizes (``--config``, default the official ViT-L at 1008). The
transformers folder gets ``model.safetensors`` and ``config.json``: the ``config.json`` the
checkpoint was converted from when there is one (kept by ``sam3_to_mmsam3.py``), else one
written from ``--config`` (default: the official sizes). ``--dst-format hf-tracker`` writes a
``Sam3TrackerModel`` (the ViT, the tracker neck and the click head) of an interactive model. A
LiteText model (``SAM3LiteTextEncoder``) becomes a ``Sam3LiteTextModel``. Non-finite tensors are
refused (``--allow-nonfinite``); nothing is written at the destination on any failure.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import tempfile

from mmsam3.utils.atomic_save import atomic_torch_save
from mmsam3.utils.sam3_checkpoint import (CheckpointConversionError, export_hf,
                                          export_hf_tracker, export_official, format_report,
                                          nonfinite_tensors, read_source, tracker_layout_of)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_vit-l.py')
DEFAULT_INTERACTIVE_CONFIG = osp.join(REPO, 'configs', '_base_', 'models',
                                      'sam3_vit-l_interactive.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='mmsam3 / mmengine checkpoint (.pth)')
    parser.add_argument('dst', help='output: a .pt file (sam3) or a folder (hf)')
    parser.add_argument('--dst-format', choices=('sam3', 'hf', 'hf-tracker'), default='sam3',
                        help='sam3: Meta sam3.pt; hf: transformers Sam3Model; hf-tracker: '
                        'transformers Sam3TrackerModel (the ViT, tracker neck and click head)')
    parser.add_argument('--config', help='mmsam3 config of the model (sizes; default: the '
                        'official SAM 3 ViT-L)')
    parser.add_argument('--tracker-from', metavar='SAM3_PT',
                        help='sam3 only: copy the tracker (and its neck) of this sam3.pt where '
                        'the checkpoint has none')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='export a checkpoint holding NaN / Inf (listed)')
    return parser.parse_args(argv)


def _model_cfg(config):
    from mmengine.config import Config

    cfg = Config.fromfile(config or DEFAULT_CONFIG)
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)


def _read_mmsam3(path):
    import torch

    from mmsam3.utils.checkpoint_integrity import checkpoint_read_error
    from mmsam3.utils.compat import safe_torch_load

    problem = checkpoint_read_error(path)
    if problem is not None:
        raise CheckpointConversionError(f'cannot read {path}: {problem}.')
    try:
        ckpt = safe_torch_load(path, map_location='cpu')
    except Exception as exc:
        raise CheckpointConversionError(f'cannot read {path}: {type(exc).__name__}: '
                                        f'{str(exc).splitlines()[0][:200]}') from None
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    video = ckpt.get('video_tracker') if isinstance(ckpt, dict) and 'state_dict' in ckpt else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointConversionError(f'{path} holds no state dict of tensors.')
    if not (any(k.startswith('backbone.blocks.') for k in state)
            and any(k.startswith(('decoder.', 'interactive_head.')) for k in state)):
        heads = ', '.join(sorted({k.split('.')[0] for k in state})[:8])
        raise CheckpointConversionError(
            f'{path} is not an mmsam3 SAM3 checkpoint (keys start with {heads}); for Meta or '
            'transformers files use sam3_to_mmsam3.py instead.')
    meta = dict(meta or {})
    if video:
        meta['video_tracker'] = video
    return state, meta


def _write_hf_folder(dst, state, config):
    from safetensors.torch import save_file

    parent = osp.dirname(osp.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(osp.abspath(dst))}.', suffix='.tmp', dir=parent)
    try:
        save_file({k: v.contiguous() for k, v in state.items()},
                  osp.join(tmp, 'model.safetensors'), metadata={'format': 'pt'})
        with open(osp.join(tmp, 'config.json'), 'w') as f:
            json.dump(config, f, indent=2)
        if not osp.exists(dst):
            os.rename(tmp, dst)
            return
        if not osp.isdir(dst):
            raise CheckpointConversionError(f'{dst} exists and is not a folder')
        for name in ('model.safetensors', 'config.json'):
            os.replace(osp.join(tmp, name), osp.join(dst, name))
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        state, meta = _read_mmsam3(args.src)
        bad = nonfinite_tensors(state)
        if bad and not args.allow_nonfinite:
            raise CheckpointConversionError(
                f'{args.src} holds non-finite values in ' +
                ', '.join(f'{k} ({n} values)' for k, n in bad[:5]) +
                '; refusing to export it (--allow-nonfinite exports it anyway).')
        for key, count in bad:
            print(f'NON-FINITE {key}: {count} values')
        if args.dst_format == 'sam3':
            extra = dict(meta.get('video_tracker') or {})
            if args.tracker_from:
                original, _ = read_source(args.tracker_from)
                for k, v in original.items():
                    if k.startswith('tracker.') or '.sam2_convs.' in k:
                        extra.setdefault(k, v)
            vit = _model_cfg(args.config)['backbone'] if args.config else None
            layout = tracker_layout_of(meta.get('source_format'))
            out, report = export_official(state, vit_arch=vit, extra=extra or None,
                                          tracker_layout=layout)
            if report['unknown']:
                raise CheckpointConversionError(
                    f'{len(report["unknown"])} entries of {args.src} have no place in Meta\'s '
                    f'layout: {", ".join(report["unknown"][:5])}')
            atomic_torch_save(dict(out), args.dst)
            print(f'converted {report["converted"]} tensors ({report["interactive"]} of the '
                  f'interactive head); regenerated {report["regenerated"]} RoPE tables; copied '
                  f'{report["copied"]} video-tracker tensors\nsaved {args.dst} (Meta sam3.pt '
                  'layout)')
            return 0
        if args.dst_format == 'hf-tracker':
            from mmsam3.utils.sam3_checkpoint_hf import hf_tracker_config_from_mmsam3
            out, report = export_hf_tracker(state)
            if report['unknown']:
                raise CheckpointConversionError(
                    f'{len(report["unknown"])} entries of {args.src} have no place in '
                    f'Sam3TrackerModel: {", ".join(report["unknown"][:5])}')
            model_cfg = _model_cfg(args.config or DEFAULT_INTERACTIVE_CONFIG)
            if 'interactive_head' not in model_cfg:
                raise CheckpointConversionError(
                    f'{args.config} has no interactive_head: pass the interactive config the '
                    'model was trained with (--config)')
            config = hf_tracker_config_from_mmsam3(model_cfg)
            print(format_report(report))
            _write_hf_folder(args.dst, out, config)
            print(f'saved {args.dst}/ (transformers Sam3TrackerModel)')
            return 0
        out, report = export_hf(state)
        if report['unknown']:
            raise CheckpointConversionError(
                f'{len(report["unknown"])} entries of {args.src} have no place in the transformers '
                f'layout: {", ".join(report["unknown"][:5])}')
        from mmsam3.utils.sam3_checkpoint_hf import hf_config_from_mmsam3
        config = meta.get('hf_config') if not args.config else None
        if config is None:
            model_cfg = _model_cfg(args.config)
            lite = not any(k.startswith('text_encoder.encoder.transformer.') for k in state)
            if lite != (model_cfg['text_encoder']['type'] == 'SAM3LiteTextEncoder'):
                raise CheckpointConversionError(
                    f'the text encoder of {args.src} is '
                    f'{"LiteText" if lite else "CLIP"}-style but the config '
                    f'({args.config or DEFAULT_CONFIG}) has {model_cfg["text_encoder"]["type"]}; '
                    'pass the config the model was trained with (--config).')
            config = hf_config_from_mmsam3(model_cfg)
        print(format_report(report))
        _write_hf_folder(args.dst, out, config)
        print(f'saved {args.dst}/ (transformers {config.get("architectures", ["?"])[0]})')
        return 0
    except CheckpointConversionError as exc:
        sys.exit(f'error: {exc}')


if __name__ == '__main__':
    sys.exit(main())
