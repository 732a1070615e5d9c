"""Train a detector with mmsam3 registered (mmdet's ``tools/train.py`` conventions).

Examples::

    python tools/train.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --amp
    python tools/train.py CONFIG --resume                 # newest readable one of the work dir
    python tools/train.py CONFIG --resume work_dirs/run1/iter_100.pth
    bash tools/dist_train.sh CONFIG 8                      # DDP (gloo on CPU-only machines)
    bash tools/dist_train.sh configs/sam3/sam3_vit-l_full-ft-fsdp_4xb1-1k_rf100-vl.py 4  # FSDP
    python tools/train.py CONFIG --check-memory 24         # refuse if one step needs > 24 GB

``--check-memory GB`` estimates the peak memory of one training step per GPU first
(``tools/analysis_tools/train_memory.py``'s estimate, FSDP sharding included) and stops, naming
the estimate and the memory levers that would fit, when it exceeds GB.
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
        '--check-memory', type=float, default=None, metavar='GB',
        help='estimate the peak memory of one training step per GPU first and refuse to start '
        'when it needs more than GB (naming the levers that would fit)')
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
        from mmsam3.utils.config_keys import check_cfg_option_keys
        check_cfg_option_keys(cfg, args.cfg_options)
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


class MemoryBudgetError(SystemExit):
    """One training step would need more memory per GPU than ``--check-memory`` allows."""


def check_memory(cfg, budget_gib, world_size=None):
    """Estimate one step of ``cfg`` per GPU; raise :class:`MemoryBudgetError` naming the
    estimate and the levers that would fit when it needs more than ``budget_gib``."""
    from mmsam3.utils.memory_levers import format_levers, lever_estimates
    from mmsam3.utils.train_memory_estimate import estimate_train_memory, gpu_gib
    fsdp = (cfg.get('strategy') or {}).get('type') == 'FSDPStrategy'
    if world_size is None:
        world_size = int(os.environ.get('WORLD_SIZE', 1)) if fsdp else 1
    est = estimate_train_memory(cfg, world_size=world_size)
    need = gpu_gib(est.peak_mib)
    where = f'per GPU with FSDP over {world_size}' if world_size > 1 else 'on one GPU'
    summary = (f'estimated peak of one training step {where}: {est.peak_mib / 1024:.2f} GiB '
               f'allocated, {need:.2f} GiB with CUDA context and allocator headroom (batch '
               f'{est.batch_size}, {est.input_size} px, {est.precision})')
    if need <= budget_gib:
        print_log(f'--check-memory {budget_gib:g}: {summary}; fits.', logger='current')
        return est
    rows = lever_estimates(cfg, est, lambda c: estimate_train_memory(c, world_size=world_size),
                           budget_gib=budget_gib)
    fitting = [r for r in rows if gpu_gib(r[2]) <= budget_gib]
    raise MemoryBudgetError(
        f'--check-memory {budget_gib:g}: refusing to start. The {summary} exceeds '
        f'{budget_gib:g} GB.\nLevers (each on its own):\n{format_levers(rows, budget_gib)}\n'
        + (f'Enough on its own: {", ".join(r[0] for r in fitting)}.' if fitting else
           'No single lever fits; combine them (docs/training_memory.md).'))


def main(argv=None):
    args = parse_args(argv)
    cfg = apply_args(Config.fromfile(args.config), args)
    from mmsam3.engine.fsdp import check_fsdp_config
    check_fsdp_config(cfg, args.launcher)
    if args.check_memory is not None:
        import mmsam3  # noqa: F401
        from mmengine.registry import init_default_scope
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        check_memory(cfg, args.check_memory)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    close_distributed()


if __name__ == '__main__':
    main()
