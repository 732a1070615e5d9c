"""Per-class and per-dataset COCO AP tables (markdown + CSV) from saved predictions.

Inputs (AP from pycocotools COCOeval with standard parameters, maxDets 100 as the official SAM 3
evaluation):

- a ``tools/test.py --out results.pkl`` dump and the config it was run with; with a
  multi-dataset config (``MultiDatasetMeanEvaluator``: ODinW13, RF100-VL) each prediction
  carries its ``dataset_name`` and is evaluated against that dataset's ann file and classes::

      python tools/analysis_tools/results_to_tables.py results.pkl \\
          --config configs/sam3/sam3_vit-l_zeroshot_odinw13.py --out-dir tables/

- a dump and ann files without the config (labels are taken as indices into each json's
  categories in json order, ``SAM3PromptCocoDataset``'s default classes)::

      python tools/analysis_tools/results_to_tables.py results.pkl --ann-file data/x/test/ann.json
      python tools/analysis_tools/results_to_tables.py results.pkl --ann-file a=A.json b=B.json

- COCO results jsons (e.g. ``CocoMetric(outfile_prefix=...)``'s ``.bbox.json``), one per ann
  file, paired in order::

      python tools/analysis_tools/results_to_tables.py a.bbox.json b.bbox.json \\
          --ann-file a=A.json b=B.json

Outputs in ``--out-dir`` (printed too): ``per_class.md/.csv`` (dataset, category, cat_id,
num_gt, AP, AP50, AP75) and ``per_dataset.md/.csv`` (dataset, AP, AP50, AP75, APs, APm, APl,
plus the mean over the datasets, as the SAM 3 paper reports ODinW13 / RF100-VL). Values are
fractions; ``nan`` (per class) / ``-1`` (per dataset) mark an undefined AP (no ground truth).
"""
import argparse
import contextlib
import csv
import io
import json
import os
import os.path as osp
import pickle
import sys
from collections import OrderedDict
from typing import List, NamedTuple, Optional

import numpy as np
from pycocotools.coco import COCO

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmsam3.evaluation.functional.coco_analysis import (  # noqa: E402
    SUMMARY_KEYS, cat_ids_for_classes, markdown_table, per_class_ap, run_coco_eval,
    samples_to_coco_results, summary)


class EvalGroup(NamedTuple):
    """One dataset to evaluate: its name, ann file, COCO results list."""
    name: str
    ann_file: str
    results: list


def _parse_ann_files(items: Optional[List[str]]) -> 'OrderedDict[str, str]':
    out = OrderedDict()
    for item in items or []:
        name, sep, path = item.partition('=')
        if not sep:  # name = the dataset folder (Roboflow layout: <dataset>/<split>/x.json)
            path = item
            parts = osp.dirname(osp.abspath(item)).split(os.sep)
            name = parts[-1] or 'dataset'
            if name in ('train', 'valid', 'val', 'test', 'export') and len(parts) > 1:
                name = parts[-2]
        if name in out:
            raise SystemExit(f'--ann-file: dataset name {name!r} given twice (name them: '
                             'NAME=PATH)')
        out[name] = path
    return out


def _config_datasets(config: str, cfg_options=None) -> 'OrderedDict[str, tuple]':
    """name -> (ann_file, classes) from a test config (single dataset or ConcatDataset with
    MultiDatasetMeanEvaluator / MultiDatasetsEvaluator)."""
    import mmsam3  # noqa: F401
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = cfg.test_dataloader.dataset
    evaluator = cfg.test_evaluator
    if dataset_cfg.get('type') == 'ConcatDataset':
        ds_cfgs = list(dataset_cfg.datasets)
        names = list(evaluator.dataset_prefixes)
        metrics = list(evaluator.metrics)[:len(names)]
    else:
        ds_cfgs = [dataset_cfg]
        names = [osp.splitext(osp.basename(config))[0]]
        metrics = evaluator if isinstance(evaluator, list) else [evaluator]
    out = OrderedDict()
    for name, ds_cfg, metric in zip(names, ds_cfgs, metrics):
        ds_cfg = dict(ds_cfg, pipeline=[], lazy_init=False)
        if ds_cfg.get('type') == 'SAM3PromptCocoDataset':
            ds_cfg['missing_image'] = 'ignore'  # only the classes are needed here
        dataset = DATASETS.build(ds_cfg)
        ann_file = metric.get('ann_file') or dataset.ann_file
        out[name] = (ann_file, tuple(dataset.metainfo['classes']))
    return out


def load_groups(results: List[str], ann_files: Optional[List[str]] = None,
                config: Optional[str] = None, iou_type: str = 'bbox',
                cfg_options=None) -> List[EvalGroup]:
    """Read predictions and pair them with their ann files (see the module docstring)."""
    named_anns = _parse_ann_files(ann_files)
    if all(r.endswith('.json') for r in results):
        if len(named_anns) != len(results):
            raise SystemExit(f'{len(results)} result jsons need as many --ann-file '
                             f'(got {len(named_anns)})')
        groups = []
        for path, (name, ann) in zip(results, named_anns.items()):
            with open(path) as f:
                groups.append(EvalGroup(name, ann, json.load(f)))
        return groups
    if len(results) != 1 or not results[0].endswith(('.pkl', '.pickle')):
        raise SystemExit('give one .pkl dump (tools/test.py --out) or COCO result .json files')
    with open(results[0], 'rb') as f:
        samples = pickle.load(f)
    if not isinstance(samples, list) or not samples or 'pred_instances' not in samples[0]:
        raise SystemExit(f'{results[0]} is not a tools/test.py --out dump of detections')
    by_name = OrderedDict()
    for s in samples:
        by_name.setdefault(s.get('dataset_name'), []).append(s)
    if config is not None:
        datasets = _config_datasets(config, cfg_options)
    else:
        if not named_anns:
            raise SystemExit('a .pkl dump needs --config or --ann-file')
        datasets = OrderedDict()
        for name, ann in named_anns.items():
            with open(ann) as f:
                cats = json.load(f)['categories']
            datasets[name] = (ann, tuple(c['name'] for c in cats))
    if list(by_name) == [None]:  # a single-dataset dump
        if len(datasets) != 1:
            raise SystemExit('the dump has no dataset names; give exactly one dataset')
        by_name = OrderedDict([(next(iter(datasets)), by_name[None])])
    unknown = [n for n in by_name if n not in datasets]
    if unknown:
        raise SystemExit(f'datasets {unknown} of the dump are not in --config / --ann-file '
                         f'(known: {list(datasets)})')
    groups = []
    for name, (ann, classes) in datasets.items():
        if name not in by_name:
            continue
        cat_ids = cat_ids_for_classes(_load_coco(ann), classes)
        groups.append(EvalGroup(name, ann, samples_to_coco_results(by_name[name], cat_ids,
                                                                   iou_type)))
    return groups


_COCO_CACHE = {}


def _load_coco(ann_file: str):
    if ann_file not in _COCO_CACHE:
        with contextlib.redirect_stdout(io.StringIO()):
            _COCO_CACHE[ann_file] = COCO(ann_file)
    return _COCO_CACHE[ann_file]


def evaluate_groups(groups: List[EvalGroup], iou_type: str = 'bbox'):
    """-> (per_class rows, per_dataset rows, {name: COCOeval})."""
    per_class, per_dataset, evals = [], [], OrderedDict()
    for group in groups:
        coco_eval = run_coco_eval(_load_coco(group.ann_file), group.results, iou_type)
        evals[group.name] = coco_eval
        for row in per_class_ap(coco_eval):
            per_class.append(OrderedDict(dataset=group.name, **row))
        per_dataset.append(OrderedDict(dataset=group.name, **summary(coco_eval)))
    if len(per_dataset) > 1:
        mean = OrderedDict(dataset=f'mean ({len(per_dataset)} datasets)')
        for key in SUMMARY_KEYS:
            values = [r[key] for r in per_dataset if r[key] >= 0]
            mean[key] = float(np.mean(values)) if values else -1.0
        per_dataset.append(mean)
    return per_class, per_dataset, evals


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return 'nan' if np.isnan(value) else f'{value:.{digits}f}'
    return str(value)


def to_markdown(rows: List[dict]) -> str:
    if not rows:
        return ''
    header = list(rows[0])
    return markdown_table(header, [[_fmt(r[k]) for k in header] for r in rows]) + '\n'


def write_tables(rows: List[dict], out_prefix: str) -> None:
    with open(out_prefix + '.md', 'w') as f:
        f.write(to_markdown(rows))
    with open(out_prefix + '.csv', 'w', newline='') as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: _fmt(v, 6) for k, v in r.items()})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('results', nargs='+', help='one .pkl dump, or COCO result .json files')
    p.add_argument('--config', help='the test config of the .pkl dump (datasets, classes)')
    p.add_argument('--ann-file', nargs='+', help='ann file(s), optionally NAME=PATH')
    p.add_argument('--iou-type', choices=('bbox', 'segm'), default='bbox')
    p.add_argument('--out-dir', default='.', help='where per_class.* / per_dataset.* go')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    groups = load_groups(args.results, args.ann_file, args.config, args.iou_type)
    per_class, per_dataset, _ = evaluate_groups(groups, args.iou_type)
    os.makedirs(args.out_dir, exist_ok=True)
    write_tables(per_class, osp.join(args.out_dir, 'per_class'))
    write_tables(per_dataset, osp.join(args.out_dir, 'per_dataset'))
    print(f'## Per-dataset {args.iou_type} AP\n\n{to_markdown(per_dataset)}')
    print(f'## Per-class {args.iou_type} AP\n\n{to_markdown(per_class)}')
    print(f'tables written to {osp.abspath(args.out_dir)}/per_{{class,dataset}}.{{md,csv}}')
    return per_class, per_dataset


if __name__ == '__main__':
    main()
