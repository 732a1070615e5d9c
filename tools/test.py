"""Test (evaluate) a checkpoint with mmsam3 registered (mmdet's ``tools/test.py`` conventions).

Examples::

    python tools/test.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py work_dirs/sam3_tiny_shapes/iter_2000.pth
    python tools/test.py CONFIG CKPT --out results.pkl --show-dir vis
    python tools/test.py CONFIG CKPT --dtype bf16 --batch-size 4   # bf16 autocast, 4 images a step
    bash tools/dist_test.sh CONFIG CKPT 8
"""
import argparse
import os
import os.path as osp

import mmsam3  # noqa: F401  (registers modules, applies the torch compatibility layer)
from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmsam3.utils import close_distributed
from mmsam3.utils.inference_precision import (inference_dtype_from_cfg, resolve_dtype,
                                              set_inference_dtype)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model (mmsam3)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file (.pkl)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory (relative to the work dir) where painted images are saved')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--dtype', help='inference dtype: float32 / bfloat16 / float16 (bf16 / fp16); default '
        "the config's model.test_cfg.dtype, else float32")
    parser.add_argument('--batch-size', type=int, help='images per test step (test_dataloader)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must be a .pkl file')
    if args.dtype is not None:
        try:
            resolve_dtype(args.dtype)
        except ValueError as exc:
            parser.error(str(exc))
    if args.batch_size is not None and args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.batch_size is not None:
        cfg.test_dataloader.batch_size = args.batch_size
    dtype = args.dtype or inference_dtype_from_cfg(cfg)

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    if dtype is not None:
        # the detector inside any wrapper (DDP): autocast + fp32 islands on its forward
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        set_inference_dtype(model, dtype)
    metrics = runner.test()
    close_distributed()
    return metrics


if __name__ == '__main__':
    main()
