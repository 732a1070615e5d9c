"""Convert a SAM 3 checkpoint (Meta's or transformers') to an mmsam3 (mmengine) checkpoint.

    python tools/model_converters/sam3_to_mmsam3.py sam3.pt checkpoints/sam3_vit-l_mmsam3.pth
    python tools/model_converters/sam3_to_mmsam3.py sam3.pt out.pth \
        --verify configs/sam3/sam3_vit-l_zeroshot_coco.py      # also load it strictly into the model
    python tools/model_converters/sam3_to_mmsam3.py sam3.1_multiplex.pt out.pth \
        --verify configs/_base_/models/sam3.1_vit-l.py
    python tools/model_converters/sam3_to_mmsam3.py facebook-sam3/ out.pth   # transformers folder
    python tools/model_converters/sam3_to_mmsam3.py model.safetensors out.pth --src-format hf

Inputs (detected from the keys / config.json, or named with ``--src-format``): ``sam3`` (Meta's
``sam3.pt``), ``sam3.1`` (``sam3.1_multiplex.pt``, its image detector), ``hf`` (transformers
``Sam3Model``: ``model.safetensors`` or its folder) and ``hf-litetext`` (``Sam3LiteTextModel``;
use ``configs/_base_/models/sam3_vit-l_litetext.py``). ``.pt`` files are read with
``torch.load(weights_only=True)``. The report prints the source format, the counts, what is
kept for interactive segmentation (the tracker neck and the click head: ``tracker_neck``,
``interactive_head``), dropped (RoPE caches) or filled in. The video-only tracker (memory
encoder / attention, object pointers) is stored unchanged in the output's ``video_tracker``
entry, which ``mmsam3_to_sam3.py`` writes back (a lossless round trip); a concept-only config
skips the interactive weights when it loads the file (and says so). A tensor holding
NaN / Inf is refused with its name (``--allow-nonfinite`` converts and lists them); an unreadable
file, an unknown layout or unknown keys end with one line and exit code 1, and nothing is written.
"""
import argparse
import os.path as osp
import sys

from mmsam3.utils.atomic_save import atomic_torch_save
from mmsam3.utils.sam3_checkpoint import (SOURCE_FORMATS, CheckpointConversionError,
                                          convert_to_mmsam3, format_report, read_source)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='sam3.pt, sam3.1_multiplex.pt, model.safetensors or a '
                        'transformers folder')
    parser.add_argument('dst', help='output mmengine checkpoint (.pth)')
    parser.add_argument('--src-format', choices=SOURCE_FORMATS,
                        help='layout of src (default: detected)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='convert a checkpoint holding NaN / Inf (listed in the report)')
    parser.add_argument('--verify', metavar='CONFIG',
                        help='build the model of CONFIG and load the result with strict=True')
    return parser.parse_args(argv)


def verify(config, state_dict):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    model.load_state_dict(state_dict, strict=True)
    return model


def main(argv=None):
    args = parse_args(argv)
    try:
        source, hf_config = read_source(args.src)
        state_dict, report = convert_to_mmsam3(source, args.src_format, hf_config,
                                               args.allow_nonfinite, where=args.src)
    except CheckpointConversionError as exc:
        sys.exit(f'error: {exc}')
    print(format_report(report))
    if args.verify:
        try:
            verify(args.verify, state_dict)
        except RuntimeError as exc:  # load_state_dict: missing / unexpected / size mismatch
            detail = ' '.join(str(exc).split())[:600]
            sys.exit(f'error: {args.verify} does not load the converted weights with '
                     f'strict=True: {detail}')
        print(f'verified: {args.verify} loads the converted weights with strict=True')
    meta = dict(converted_from=osp.basename(osp.normpath(args.src)),
                source_format=report['format'])
    if hf_config is not None:
        meta['hf_config'] = hf_config  # reused by mmsam3_to_sam3.py --dst-format hf
    out = dict(meta=meta, state_dict=state_dict)
    if report.get('video_tracker'):
        # Not part of the image model; kept as is so mmsam3_to_sam3.py can write it back.
        out['video_tracker'] = dict(report['video_tracker'])
    # Written to a temporary file and renamed: a killed conversion leaves no partial args.dst.
    atomic_torch_save(out, args.dst)
    print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
