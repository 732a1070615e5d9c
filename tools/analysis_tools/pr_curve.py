"""Precision-recall curves (overall and per class) from COCOeval's precision array, as PNGs.

Same inputs as ``results_to_tables.py`` (a ``tools/test.py --out`` dump with its config or ann
files, or COCO result jsons with ann files)::

    python tools/analysis_tools/pr_curve.py results.pkl \\
        --config configs/sam3/sam3_vit-l_zeroshot_odinw13.py --out-dir pr/ [--iou 0.5]
    python tools/analysis_tools/pr_curve.py a.bbox.json --ann-file a=A.json --per-class-files

Writes ``<out-dir>/<dataset>_pr.png`` per dataset: the overall curve (mean precision over the
categories with ground truth, as COCO AP averages them) and one curve per category (legend up to
``--max-legend`` categories), at IoU ``--iou`` (``--iou mean``: averaged over 0.50:0.95), area
all, maxDets 100. ``--per-class-files`` also writes ``<dataset>_pr_<category>.png``.
"""
import argparse
import os
import os.path as osp
import re
import sys

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import matplotlib  # noqa: E402

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from results_to_tables import evaluate_groups, load_groups  # noqa: E402

from mmsam3.evaluation.functional.coco_analysis import pr_curve  # noqa: E402


def _safe(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9._-]+', '_', str(name)).strip('_') or 'x'


def plot_dataset(name, coco_eval, out_dir, iou=0.5, per_class_files=False, max_legend=20):
    """Write the PNG(s) of one dataset; returns their paths."""
    cat_ids = list(coco_eval.params.catIds)
    names = [coco_eval.cocoGt.cats[c]['name'] for c in cat_ids]
    iou_txt = 'IoU 0.50:0.95' if iou is None else f'IoU {iou:.2f}'
    paths = []
    fig, ax = plt.subplots(figsize=(7, 5))
    show_legend = len(cat_ids) <= max_legend
    for k, cat_name in enumerate(names):
        recall, precision = pr_curve(coco_eval, iou, k)
        if np.all(np.isnan(precision)):
            continue  # no ground truth: no curve
        ax.plot(recall, precision, lw=1, alpha=0.7, label=cat_name if show_legend else None)
        if per_class_files:
            f2, a2 = plt.subplots(figsize=(5, 4))
            a2.plot(recall, precision, lw=2)
            a2.set(xlim=(0, 1), ylim=(0, 1.01), xlabel='recall', ylabel='precision',
                   title=f'{name}: {cat_name} ({iou_txt})')
            a2.grid(alpha=0.3)
            path = osp.join(out_dir, f'{_safe(name)}_pr_{_safe(cat_name)}.png')
            f2.savefig(path, dpi=100, bbox_inches='tight')
            plt.close(f2)
            paths.append(path)
    recall, precision = pr_curve(coco_eval, iou)
    ax.plot(recall, precision, 'k-', lw=2.5, label='overall (mean over categories)')
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel='recall', ylabel='precision',
           title=f'{name}: precision-recall ({iou_txt}, area all, maxDets 100)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='lower left')
    path = osp.join(out_dir, f'{_safe(name)}_pr.png')
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
    return [path] + paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('results', nargs='+', help='one .pkl dump, or COCO result .json files')
    p.add_argument('--config', help='the test config of the .pkl dump (datasets, classes)')
    p.add_argument('--ann-file', nargs='+', help='ann file(s), optionally NAME=PATH')
    p.add_argument('--iou-type', choices=('bbox', 'segm'), default='bbox')
    p.add_argument('--iou', default='0.5',
                   help="IoU threshold of the curves (0.50, 0.55, ..., 0.95) or 'mean'")
    p.add_argument('--per-class-files', action='store_true', help='one PNG per category too')
    p.add_argument('--max-legend', type=int, default=20)
    p.add_argument('--out-dir', default='.', help='where the PNGs go')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    iou = None if args.iou == 'mean' else float(args.iou)
    groups = load_groups(args.results, args.ann_file, args.config, args.iou_type)
    _, _, evals = evaluate_groups(groups, args.iou_type)
    os.makedirs(args.out_dir, exist_ok=True)
    paths = []
    for name, coco_eval in evals.items():
        paths += plot_dataset(name, coco_eval, args.out_dir, iou, args.per_class_files,
                              args.max_legend)
    for path in paths:
        print(path)
    return paths


if __name__ == '__main__':
    main()
