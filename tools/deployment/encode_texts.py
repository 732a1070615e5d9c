"""Write the text-tower features of a fixed list of phrases to a cache file, so a deployed SAM 3
can run without the text graph (devices where the 354M-parameter text tower does not fit).

    python tools/deployment/encode_texts.py configs/sam3/sam3_vit-l_zeroshot_coco.py \
        checkpoints/sam3_vit-l_mmsam3.pth --texts "fish" "shark" --out fish_shark.npz
    python tools/deployment/encode_texts.py CONFIG CKPT --texts-file phrases.txt --out cache.npz

The file records the fingerprint of the text tower's weights; a deployed model exported from
another model refuses it.
"""
import argparse

import mmsam3  # noqa: F401  (registers modules)
from mmengine.config import Config, DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Precompute SAM 3 text features')
    parser.add_argument('config', help='model config')
    parser.add_argument('checkpoint', help='model checkpoint')
    parser.add_argument('--texts', nargs='*', default=[], help='phrases')
    parser.add_argument('--texts-file', help='a file with one phrase per line')
    parser.add_argument('--out', required=True, help='cache file (.npz)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if not args.texts and not args.texts_file:
        parser.error('give --texts or --texts-file')
    if not args.out.endswith('.npz'):
        parser.error('--out must end with .npz')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmdet.apis import init_detector

    from mmsam3.deploy import TextFeatureCache

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    phrases = list(args.texts)
    if args.texts_file:
        with open(args.texts_file) as f:
            phrases += [line.strip() for line in f if line.strip()]
    model = init_detector(cfg, args.checkpoint, device=args.device)
    with torch.no_grad():
        cache = TextFeatureCache.from_model(model, phrases)
    cache.save(args.out)
    print(f'{len(cache)} phrases -> {args.out} (text tower {cache.fingerprint})')
    return cache


if __name__ == '__main__':
    main()
