"""Train a detector with mmsam3 registered (mmdet's ``tools/train.py`` conventions).

Examples::

    python tools/train.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --amp
    python tools/train.py CONFIG --resume                 # newest readable one of the work dir
    python tools/train.py CONFIG --resume work_dirs/run1/iter_100.pth
    bash tools/dist_train.sh CONFIG 8                      # DDP (gloo on CPU-only machines)
"""
import argparse
import logging
import os
import os.path as osp

import mmsam3  # noqa: F401  (registers modules, applies the torch compatibility layer)
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmsam3.utils import close_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector (mmsam3)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='enable automatically scaling LR')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint (refused, naming a readable one, if it is '
        'truncated or damaged); without a path, from the one the work dir\'s last_checkpoint '
        'names, or with a warning from the newest readable checkpoint there if that one is '
        'damaged')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs such as '
        'train_cfg.max_iters=100 or "model.test_cfg.score_thr=0.3"')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_args(cfg, args):
    """Fold the command-line switches into ``cfg`` (kept apart from ``main`` for testing)."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print_log('AMP is already enabled by the config.', logger='current',
                      level=logging.WARNING)
        else:
            if wrapper != 'OptimWrapper':
                raise ValueError(f'--amp expects optim_wrapper.type OptimWrapper, got {wrapper}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr = dict(enable=..., '
                               'base_batch_size=...)` in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = apply_args(Config.fromfile(args.config), args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    close_distributed()


if __name__ == '__main__':
    main()
