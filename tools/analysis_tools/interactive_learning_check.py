"""Proof that SAM 3's click head learns: held-out shapes images, untrained vs trained, in clicks.

    python tools/analysis_tools/interactive_learning_check.py            # from scratch (tiny)
    python tools/analysis_tools/interactive_learning_check.py --max-iters 50   # a quick run
    python tools/analysis_tools/interactive_learning_check.py \\
        --config configs/sam3_interactive/sam3_tiny-interactive_heads-ft_1xb4-300_shapes.py \\
        --load-from work_dirs/learning_check/iter_5000.pth   # heads only, concept-trained towers

Steps (through the real tools):
1. ``tools/dataset_converters/make_shapes_dataset.py`` writes the shapes data when missing;
2. the config's model, untrained (or as loaded from ``--load-from``), is evaluated on the
   held-out ``valid`` images with the click simulator (:class:`InteractiveClickMetric`);
3. ``tools/train.py`` trains it (a child process; its CPU time is measured);
4. the trained checkpoint is evaluated the same way.
Prints mIoU@1 / mIoU@5 / NoC@85 / NoC@90 (and failures) before and after, the training's wall
and CPU minutes, and PASS / FAIL against ``--min-miou1`` / ``--max-noc85``. Exit status 0 on
PASS, 1 on FAIL. Threads: ``--threads`` (default ``OMP_NUM_THREADS``, else 2).
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3_interactive',
                  'sam3_tiny-interactive_scratch_1xb4-5k_shapes.py')
KEYS = ('click/mIoU@1', 'click/mIoU@5', 'click/NoC@85', 'click/NoC@90', 'click/NoF@85',
        'click/NoF@90', 'click/num_objects')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--data-root', default=osp.join(REPO, 'data', 'shapes'))
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                  'interactive_learning_check'))
    p.add_argument('--load-from', default=None,
                   help='checkpoint to start from (e.g. a concept-trained tiny model)')
    p.add_argument('--train-images', type=int, default=800)
    p.add_argument('--val-images', type=int, default=40)
    p.add_argument('--max-iters', type=int, default=None, help="default: the config's")
    p.add_argument('--num-clicks', type=int, default=20)
    p.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 2)),
                   help='CPU threads (default: OMP_NUM_THREADS, else 2); on a machine '
                   'already busy, 1 thread avoids OpenMP waiting on descheduled threads')
    p.add_argument('--min-miou1', type=float, default=0.75)
    p.add_argument('--max-noc85', type=float, default=3.0)
    p.add_argument('--skip-untrained', action='store_true')
    return p.parse_args(argv)


def run(cmd, env):
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def data_options(root):
    root = root.rstrip('/') + '/'
    return [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}']


def evaluate(config, checkpoint, options, work_dir, num_clicks):
    """The click metrics of ``config`` (weights ``checkpoint``, or untrained) on the held-out
    images, through mmengine's test loop."""
    from mmengine.config import Config, DictAction  # noqa: F401
    from mmengine.runner import Runner

    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(o.split('=', 1) for o in options))
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.model.num_clicks = num_clicks
    cfg.test_evaluator = dict(type='InteractiveClickMetric', max_clicks=num_clicks)
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook')
    runner = Runner.from_cfg(cfg)
    return runner.test()


def main(argv=None):
    args = parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    os.environ.update(OMP_NUM_THREADS=str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    py = sys.executable
    val_json = osp.join(args.data_root, 'valid', '_annotations.coco.json')
    if not osp.isfile(val_json):
        run([py, osp.join(REPO, 'tools/dataset_converters/make_shapes_dataset.py'),
             args.data_root, '--train', str(args.train_images), '--val', str(args.val_images),
             '--size', '168', '--radius', '0.15', '0.25', '--preset', 'distinct'], env)
    options = data_options(args.data_root)
    train_options = list(options)
    if args.max_iters:
        m = args.max_iters
        train_options += [f'train_cfg.max_iters={m}',
                          f'default_hooks.checkpoint.interval={m}',
                          f'param_scheduler.1.begin={m // 2}', f'param_scheduler.1.end={m}',
                          f'param_scheduler.1.T_max={m - m // 2}']
    if args.load_from:
        train_options.append(f'load_from={args.load_from}')
    os.makedirs(args.work_dir, exist_ok=True)

    before = None
    if not args.skip_untrained:
        before = evaluate(args.config, args.load_from, options,
                          osp.join(args.work_dir, 'eval_untrained'), args.num_clicks)

    t0, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    run([py, osp.join(REPO, 'tools/train.py'), args.config, '--work-dir', args.work_dir,
         '--cfg-options'] + train_options + ['val_cfg=None', 'val_dataloader=None',
                                              'val_evaluator=None'], env)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_min = (time.time() - t0) / 60
    cpu_min = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / 60
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    after = evaluate(args.config, ckpt, options, osp.join(args.work_dir, 'eval_trained'),
                     args.num_clicks)

    cpu_name = 'unknown CPU'
    if osp.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu_name = next((ln.split(':', 1)[1].strip() for ln in f
                             if ln.startswith('model name')), cpu_name)
    summary = dict(config=osp.relpath(args.config, REPO), checkpoint=ckpt,
                   load_from=args.load_from, threads=args.threads, cpu=cpu_name,
                   train_wall_min=wall_min, train_cpu_min=cpu_min,
                   untrained=before, trained=after)
    with open(osp.join(args.work_dir, 'interactive_learning_check.json'), 'w') as f:
        json.dump(summary, f, indent=1)

    print('\n=== interactive learning check (held-out shapes images, '
          f'{args.num_clicks} simulated clicks per object) ===')
    print(f'config:     {summary["config"]}')
    print(f'start from: {args.load_from or "random initialisation"}')
    print(f'checkpoint: {ckpt}')
    print(f'CPU:        {cpu_name}, {args.threads} threads')
    print(f'training:   {wall_min:.1f} min wall, {cpu_min:.1f} CPU min (all threads)')
    print(f'{"metric":<20}{"untrained":>12}{"trained":>12}')
    def fmt(result, key):
        return '-' if result is None or key not in result else f'{result[key]:.3f}'

    for key in KEYS:
        print(f'{key:<20}{fmt(before, key):>12}{fmt(after, key):>12}')
    ok = (after['click/mIoU@1'] >= args.min_miou1 and after['click/NoC@85'] <= args.max_noc85)
    verdict = 'PASS' if ok else 'FAIL'
    print(f'{verdict}: mIoU@1 {after["click/mIoU@1"]:.3f} (target >= {args.min_miou1}), '
          f'NoC@85 {after["click/NoC@85"]:.2f} (target <= {args.max_noc85})')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
