"""Convert Meta's SAM 3 checkpoint to an mmsam3 (mmengine) checkpoint.

    python tools/model_converters/sam3_to_mmsam3.py sam3.pt checkpoints/sam3_vit-l_mmsam3.pth
    python tools/model_converters/sam3_to_mmsam3.py sam3.pt out.pth \
        --verify configs/sam3_vit-l_1008_zeroshot.py      # also load it strictly into the model

The input is read with ``torch.load(weights_only=True)``: it must be a plain state dict (the
official release is). What is dropped (tracker, RoPE caches, the tracker's neck) is printed.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmsam3.utils.sam3_checkpoint import convert_official_state_dict, format_report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (sam3.pt)')
    parser.add_argument('dst', help='output mmengine checkpoint (.pth)')
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
    if args.src.endswith('.safetensors'):
        sys.exit('Hugging Face safetensors use another key layout that is not supported yet; '
                 'convert the official sam3.pt instead.')
    checkpoint = torch.load(args.src, map_location='cpu', weights_only=True)
    state_dict, report = convert_official_state_dict(checkpoint)
    print(format_report(report))
    if report['unknown']:
        sys.exit(f'{len(report["unknown"])} keys of {args.src} are not part of SAM 3\'s image '
                 'model layout; refusing to write a partial checkpoint.')
    if args.verify:
        verify(args.verify, state_dict)
        print(f'verified: {args.verify} loads the converted weights with strict=True')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(meta=dict(converted_from=osp.basename(args.src)), state_dict=state_dict),
               args.dst)
    print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
