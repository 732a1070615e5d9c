"""Plot curves and compute training time from mmengine's json logs (mmdet's ``analyze_logs``).

    python tools/analysis_tools/analyze_logs.py plot_curve \
        work_dirs/sam3_tiny_shapes/*/vis_data/scalars.json --keys loss bbox_mAP_50 --out curve.png
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/x/*/vis_data/scalars.json

The logs are the ``vis_data/scalars.json`` (or ``vis_data/<timestamp>.json``) files mmengine
writes: one json object a line, training lines with ``step`` (the iteration), ``loss``, ``lr``,
``time``...; validation lines with ``<metric>/<key>`` entries (``coco/bbox_mAP_50``). A key is
given in full (``coco/bbox_mAP_50``) or by its last part (``bbox_mAP_50``). mmengine logs
iteration-based validation with the epoch (0) as its step, so a validation point is placed at
the last training iteration logged before it. Several logs give one curve each per key (a
resumed run writes a new timestamped folder, hence a second log).
"""
import argparse
import json
import os.path as osp
from typing import Dict, List

import numpy as np


def load_json_log(path: str) -> Dict[str, list]:
    """One log -> ``dict(train=[records], val=[records])``, each record with ``step``.

    Training records also get ``epoch`` when the log has one (epoch-based runs); validation
    records get ``step`` = the last training step before them.
    """
    if not path.endswith('.json'):
        raise ValueError(f'{path}: not a json log (expected mmengine\'s vis_data/scalars.json '
                         'or vis_data/<timestamp>.json)')
    train, val = [], []
    last_step, last_epoch = 0, None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}, line {n}: not json ({e})') from None
            if any('/' in k for k in rec):
                val.append(dict(rec, step=last_step))
            elif 'step' in rec or 'iter' in rec:
                last_step = int(rec.get('step', rec.get('iter')))
                last_epoch = rec.get('epoch', last_epoch)
                train.append(dict(rec, step=last_step) if last_epoch is None else
                             dict(rec, step=last_step, epoch=last_epoch))
    return dict(train=train, val=val)


def resolve_key(log: Dict[str, list], key: str, path: str = '') -> str:
    """The full name of ``key`` in ``log`` (exact, or the unique key ending in ``/key``)."""
    names = {k for rec in log['train'] + log['val'] for k in rec}
    if key in names:
        return key
    matches = sorted(k for k in names if k.split('/')[-1] == key)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise KeyError(f'{path}: {key!r} is ambiguous ({matches}); give the full name')
    hint = ('; validation metrics appear only when the run evaluated (train_cfg.val_interval)'
            if 'mAP' in key or '/' in key else '; lower default_hooks.logger.interval')
    raise KeyError(f'{path} has no {key!r}; it has {sorted(names)}{hint}')


def series(log: Dict[str, list], key: str):
    """(steps, values) of one key: validation records for ``metric/key`` names, else training."""
    records = log['val'] if '/' in key else log['train']
    pts = [(rec['step'], rec[key]) for rec in records if key in rec]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def plot_curve(logs: List[Dict[str, list]], args) -> None:
    import matplotlib
    if args.backend is not None:
        matplotlib.use(args.backend)
    elif args.out is not None:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    legend = args.legend or [f'{osp.basename(p)}_{k}' for p in args.json_logs for k in args.keys]
    if len(legend) != len(args.json_logs) * len(args.keys):
        raise ValueError(f'--legend needs {len(args.json_logs) * len(args.keys)} names (one per '
                         f'log and key), got {len(legend)}')
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (log, path) in enumerate(zip(logs, args.json_logs)):
        for j, key in enumerate(args.keys):
            name = resolve_key(log, key, path)
            xs, ys = series(log, name)
            print(f'plot curve of {path}, metric is {name} ({len(xs)} points)')
            is_val = '/' in name
            ax.plot(xs, ys, label=legend[i * len(args.keys) + j], marker='o' if is_val else None,
                    linewidth=1.5 if is_val else 0.8)
    ax.set_xlabel('iteration')
    ax.legend()
    if args.title:
        ax.set_title(args.title)
    fig.tight_layout()
    if args.out is None:
        plt.show()
    else:
        fig.savefig(args.out)
        print(f'save curve to: {args.out}')
    plt.close(fig)


def train_time(log: Dict[str, list], include_outliers: bool = False) -> Dict[str, float]:
    """Seconds per iteration from the ``time`` entries, per epoch (one group if iter-based).

    The first record of each group is left out unless ``include_outliers`` (it carries the
    start-up / data-loader warm-up time). Returns ``slowest``, ``fastest`` (group index and its
    mean), ``std`` over groups and ``mean`` (mean of the group means).
    """
    groups: Dict[object, list] = {}
    for rec in log['train']:
        if 'time' in rec:
            groups.setdefault(rec.get('epoch', 0), []).append(float(rec['time']))
    means = [np.mean(v if include_outliers else v[1:]) for v in groups.values()
             if len(v) > (0 if include_outliers else 1)]
    if not means:
        raise KeyError('the log has too few timed training lines; lower '
                       'default_hooks.logger.interval so that several lines are logged')
    means = np.array(means)
    return dict(slowest=int(means.argmax()), slowest_time=float(means.max()),
                fastest=int(means.argmin()), fastest_time=float(means.min()),
                std=float(means.std()), mean=float(means.mean()), groups=len(means))


def cal_train_time(logs: List[Dict[str, list]], args) -> List[Dict[str, float]]:
    results = []
    for log, path in zip(logs, args.json_logs):
        t = train_time(log, args.include_outliers)
        unit = 'epoch' if any('epoch' in r for r in log['train']) else 'group (iteration-based)'
        print(f'-----Analyze train time of {path}-----')
        print(f'slowest {unit} {t["slowest"] + 1}, average time is {t["slowest_time"]:.4f} s/iter')
        print(f'fastest {unit} {t["fastest"] + 1}, average time is {t["fastest_time"]:.4f} s/iter')
        print(f'time std over {unit}s is {t["std"]:.4f}')
        print(f'average iter time: {t["mean"]:.4f} s/iter\n')
        results.append(t)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze json logs')
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot curves of logged keys')
    plot.add_argument('json_logs', nargs='+', help='json logs (vis_data/scalars.json)')
    plot.add_argument('--keys', nargs='+', default=['bbox_mAP'], help='keys to plot')
    plot.add_argument('--title', help='figure title')
    plot.add_argument('--legend', nargs='+', help='one name per log and key')
    plot.add_argument('--backend', help='matplotlib backend')
    plot.add_argument('--out', help='save the figure here instead of showing it')
    timing = sub.add_parser('cal_train_time', help='average time per training iteration')
    timing.add_argument('json_logs', nargs='+', help='json logs (vis_data/scalars.json)')
    timing.add_argument('--include-outliers', action='store_true',
                        help='keep the first record of every epoch')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logs = [load_json_log(p) for p in args.json_logs]
    return {'plot_curve': plot_curve, 'cal_train_time': cal_train_time}[args.task](logs, args)


if __name__ == '__main__':
    main()
