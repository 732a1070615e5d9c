"""End-to-end proof that SAM 3 learns: synthetic shapes -> train the tiny model -> evaluate -> plot.

    python tools/analysis_tools/learning_check.py                  # full check (AP50 >= 0.5 target)
    python tools/analysis_tools/learning_check.py --max-iters 300  # a quick end-to-end run

Steps (all through the real tools):
1. ``tools/dataset_converters/make_shapes_dataset.py`` writes the dataset (an existing one is
   reused when it holds the categories of ``--preset``, and refused otherwise);
2. ``tools/train.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py`` trains the tiny model from scratch, evaluating
   with mmdet's ``CocoMetric`` (and cgF1) every ``--val-interval`` iterations;
3. the training log becomes ``curve.png`` (loss and bbox AP50 against iterations);
4. ``tools/demo.py`` draws the trained model's predictions on a validation image.
Prints where everything went, the final AP figures, the wall time, and PASS / FAIL against
``--min-ap50``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')
DEFAULT_BPE = osp.join(REPO, '..', 'shared', 'data', 'bpe_simple_vocab_16e6.txt.gz')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data-root', default=osp.join(REPO, 'data', 'shapes'))
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'learning_check'))
    p.add_argument('--train-images', type=int, default=800)
    p.add_argument('--val-images', type=int, default=40)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--preset', default='distinct', choices=('distinct', 'compositional'),
                   help='category set of the generated data (see make_shapes_dataset.py)')
    p.add_argument('--max-iters', type=int, default=None, help='default: the config\'s')
    p.add_argument('--val-interval', type=int, default=None)
    p.add_argument('--bpe', default=os.environ.get('MMSAM3_BPE_PATH', DEFAULT_BPE))
    p.add_argument('--min-ap50', type=float, default=0.5)
    return p.parse_args(argv)


def run(cmd):
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def read_log(work_dir):
    """(iteration, loss) and (iteration, metrics) pairs from mmengine's scalars.json files (one
    per run, several after a resume), read by ``analyze_logs.load_json_log``."""
    from analyze_logs import load_json_log  # this folder

    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise FileNotFoundError(f'no training log under {work_dir}')
    losses, evals = [], []
    for path in logs:
        log = load_json_log(path)
        losses += [(rec['step'], rec['loss']) for rec in log['train'] if 'loss' in rec]
        evals += [(rec['step'], rec) for rec in log['val']]
    return losses, evals


def plot(losses, evals, out_file):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot([s for s, _ in losses], [v for _, v in losses], color='tab:blue', lw=1)
    ax1.set_xlabel('iteration')
    ax1.set_ylabel('training loss', color='tab:blue')
    ax1.set_yscale('log')
    ax2 = ax1.twinx()
    for key, color in (('coco/bbox_mAP_50', 'tab:red'), ('coco/segm_mAP_50', 'tab:green')):
        pts = [(s, r[key]) for s, r in evals if key in r]
        if pts:
            ax2.plot(*zip(*pts), 'o-', color=color, label=key.split('/')[1])
    ax2.set_ylabel('AP50 (val)')
    ax2.set_ylim(0, 1)
    ax2.legend(loc='lower right')
    ax1.set_title('SAM 3 tiny, from scratch on synthetic shapes (CPU)')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)


def check_existing_data(val_json, preset):
    """An existing dataset is reused only when it holds the categories of ``preset``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_shapes_dataset',
        osp.join(REPO, 'tools', 'dataset_converters', 'make_shapes_dataset.py'))
    shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes)
    with open(val_json) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    if names != list(shapes.PRESETS[preset][0]):
        sys.exit(f'{val_json} holds the categories {names}, not those of --preset {preset}; '
                 f'delete that dataset or pass another --data-root')


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    py = sys.executable
    if not osp.isfile(args.bpe):
        sys.exit(f'CLIP BPE vocabulary not found at {args.bpe} (use --bpe)')
    val_json = osp.join(args.data_root, 'valid', '_annotations.coco.json')
    if not osp.isfile(val_json):
        run([py, osp.join(REPO, 'tools/dataset_converters/make_shapes_dataset.py'), args.data_root,
             '--train', str(args.train_images), '--val', str(args.val_images),
             '--seed', str(args.seed), '--size', '168', '--radius', '0.15', '0.25',
             '--preset', args.preset])
    else:
        check_existing_data(val_json, args.preset)
    root = args.data_root.rstrip('/') + '/'
    options = [
        f'data_root={root}', f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.0.ann_file={root}valid/_annotations.coco.json',
        f'val_evaluator.1.ann_file={root}valid/_annotations.coco.json',
        f'test_evaluator.0.ann_file={root}valid/_annotations.coco.json',
        f'test_evaluator.1.ann_file={root}valid/_annotations.coco.json',
        f'model.tokenizer.bpe_path={args.bpe}'
    ]
    if args.max_iters:
        options += [f'train_cfg.max_iters={args.max_iters}',
                    f'param_scheduler.1.begin={args.max_iters // 2}',
                    f'param_scheduler.1.end={args.max_iters}',
                    f'param_scheduler.1.T_max={args.max_iters - args.max_iters // 2}']
        if not args.val_interval:
            args.val_interval = args.max_iters
    if args.val_interval:
        options += [f'train_cfg.val_interval={args.val_interval}',
                    f'default_hooks.checkpoint.interval={args.val_interval}']
    run([py, osp.join(REPO, 'tools/train.py'), CONFIG, '--work-dir', args.work_dir,
         '--cfg-options'] + options)
    train_time = time.time() - start  # data generation + training + evaluation

    losses, evals = read_log(args.work_dir)
    curve = osp.join(args.work_dir, 'curve.png')
    plot(losses, evals, curve)
    final = evals[-1][1] if evals else {}
    best_ap50 = max((r.get('coco/bbox_mAP_50', 0) for _, r in evals), default=0.0)

    with open(osp.join(root, 'valid', '_annotations.coco.json')) as f:
        val = json.load(f)
    names = [c['name'] for c in val['categories']]
    # The first validation image that holds at least one instance.
    annotated = {a['image_id'] for a in val['annotations']}
    val_img = osp.join(root, 'valid',
                       next(im['file_name'] for im in val['images'] if im['id'] in annotated))
    ckpt = osp.join(args.work_dir, open(osp.join(args.work_dir, 'last_checkpoint')).read().strip()
                    ) if osp.exists(osp.join(args.work_dir, 'last_checkpoint')) else None
    run([py, osp.join(REPO, 'tools/demo.py'), val_img, CONFIG, '--weights', ckpt, '--texts'] +
        names + ['--score-thr', '0.5', '--out-dir', osp.join(args.work_dir, 'demo'),
                 '--cfg-options'] + [o for o in options if o.startswith('model.')])

    print('\n=== learning check ===')
    print(f'data:        {root}')
    print(f'work dir:    {args.work_dir} (checkpoint {ckpt})')
    print(f'curve:       {curve}')
    print(f'predictions: {osp.join(args.work_dir, "demo")}')
    print(f'data + train + eval wall time: {train_time / 60:.1f} min')
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50',
                'cgf1/bbox_cgF1', 'cgf1/segm_cgF1'):
        if key in final:
            print(f'final {key}: {final[key]:.3f}')
    verdict = 'PASS' if best_ap50 >= args.min_ap50 else 'FAIL'
    print(f'{verdict}: best bbox AP50 {best_ap50:.3f} (target >= {args.min_ap50})')
    return 0 if verdict == 'PASS' else 1


if __name__ == '__main__':
    sys.exit(main())
