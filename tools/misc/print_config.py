"""Print the whole (merged) config of an experiment, optionally saving it (mmdet's tool).

    python tools/misc/print_config.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py
    python tools/misc/print_config.py CONFIG --cfg-options train_cfg.max_iters=100 \
        --save-path work_dirs/merged.py

``_base_`` files (including ``mmsam3::`` ones) are merged, ``--cfg-options`` applied last, like
``tools/train.py`` does; ``--save-path`` takes a ``.py``, ``.json`` or ``.yml`` name.
"""
import argparse
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmsam3  # noqa: E402,F401  (resolves mmsam3:: base configs)
from mmengine.config import Config, DictAction  # noqa: E402

SAVE_SUFFIXES = ('.py', '.json', '.yml', '.yaml')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--save-path', help='also save the merged config here (.py/.json/.yml)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    args = parser.parse_args(argv)
    if args.save_path and osp.splitext(args.save_path)[1] not in SAVE_SUFFIXES:
        parser.error(f'--save-path {args.save_path}: the name must end with one of '
                     f'{", ".join(SAVE_SUFFIXES)}')
    return args


def main(argv=None) -> Config:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    print(f'Config:\n{cfg.pretty_text}')
    if args.save_path:
        os.makedirs(osp.dirname(osp.abspath(args.save_path)), exist_ok=True)
        cfg.dump(args.save_path)
        print(f'Config saved at {args.save_path}')
    return cfg


if __name__ == '__main__':
    main()
