"""``MultiDatasetMeanEvaluator``: per-dataset metrics over a ``ConcatDataset`` plus their mean.

Benchmarks such as ODinW13 and RF100-VL report AP on every dataset and the plain mean over the
datasets (SAM 3 paper; the official code evaluates each dataset with COCOeval and averages the
``AP`` numbers). mmdet's :class:`~mmdet.evaluation.MultiDatasetsEvaluator` already evaluates one
metric per slice of a ``ConcatDataset`` and names the keys ``<dataset>/<metric prefix>/<key>``;
this subclass keeps that and the key names, and changes what it needs for 13-100 datasets:

- routing: each data sample is processed only by the metric of *its* dataset (mmdet feeds every
  sample to every metric and slices afterwards, which multiplies memory and time by the number
  of datasets and hands each metric predictions whose labels belong to another dataset's
  classes). A sample's dataset follows from its position in the test loop: the k-th sample seen
  by rank r of W is sample ``r + k * W`` of the ``ConcatDataset`` -- the order of mmengine's
  ``DefaultSampler(shuffle=False)`` that ``collect_results`` already assumes when it restores the
  global order (padding samples wrap around like the sampler's ``round_up``). Each metric gets a
  ``None`` placeholder for the other samples so its per-rank lists stay aligned; placeholders are
  dropped before ``compute_metrics``.
- ``dataset_meta``: every metric gets its own dataset's metainfo (classes) from the start, not
  only in ``evaluate``, so the per-sample checks of mmsam3 metrics see the right classes.
- mean: for every metric key of the per-dataset results (e.g. ``coco/bbox_mAP``), the key
  ``mean/<key>`` is the mean over the datasets that report it with a number >= 0 (COCOeval gives
  -1 when a dataset has no ground truth; those are left out with a warning). A markdown table
  (datasets x ``table_keys``) is logged.
- extra metrics: metrics after the ``len(dataset_prefixes)`` per-dataset ones (e.g. the
  ``DumpDetResults`` that ``tools/test.py --out`` appends) see every sample, with its dataset
  name under ``dataset_name``, and are evaluated on the whole set (mmdet silently skips them).

Config (``default_scope='mmdet'``)::

    test_dataloader = dict(dataset=dict(type='ConcatDataset', datasets=[ds_a, ds_b]))
    test_evaluator = dict(type='MultiDatasetMeanEvaluator', dataset_prefixes=['a', 'b'],
                          metrics=[dict(type='CocoMetric', ann_file=...), dict(...)])

Output: ``{'a/coco/bbox_mAP': ..., 'b/coco/bbox_mAP': ..., 'mean/coco/bbox_mAP': ..., ...}``.
"""
import bisect
from collections import OrderedDict
from typing import List, Optional, Sequence, Union

import numpy as np
from mmdet.evaluation.evaluator import MultiDatasetsEvaluator
from mmdet.registry import EVALUATOR
from mmengine.dist import (broadcast_object_list, collect_results, get_dist_info,
                           is_main_process)
from mmengine.evaluator import BaseMetric
from mmengine.evaluator.metric import _to_cpu
from mmengine.logging import MMLogger
from mmengine.structures import BaseDataElement

from ..functional.coco_analysis import markdown_table

MEAN_PREFIX = 'mean'


@EVALUATOR.register_module()
class MultiDatasetMeanEvaluator(MultiDatasetsEvaluator):
    """mmdet ``MultiDatasetsEvaluator`` with per-dataset routing and a ``mean/`` key per metric.

    Args:
        metrics: one metric config per dataset (same order as the ``ConcatDataset``), optionally
            followed by metrics that see all samples (module docstring).
        dataset_prefixes: one name per dataset.
        mean_prefix: prefix of the mean keys. Defaults to ``'mean'``.
        table_keys: per-dataset keys (without the dataset prefix) shown in the logged table;
            None: every numeric key ending in ``mAP`` / ``mAP_50`` / ``mAP_75``.
    """

    def __init__(self,
                 metrics: Union[dict, BaseMetric, Sequence],
                 dataset_prefixes: Sequence[str],
                 mean_prefix: str = MEAN_PREFIX,
                 table_keys: Optional[Sequence[str]] = None) -> None:
        super().__init__(metrics, list(dataset_prefixes))
        prefixes = list(dataset_prefixes)
        if len(set(prefixes)) != len(prefixes):
            dups = sorted({p for p in prefixes if prefixes.count(p) > 1})
            raise ValueError(f'dataset_prefixes must be unique, repeated: {dups}')
        if mean_prefix in prefixes:
            raise ValueError(f'mean_prefix {mean_prefix!r} is also a dataset prefix')
        if len(self.metrics) < len(prefixes):
            raise ValueError(f'{len(prefixes)} dataset_prefixes but only {len(self.metrics)} '
                             'metrics: give one metric per dataset')
        self.mean_prefix = mean_prefix
        self.table_keys = list(table_keys) if table_keys is not None else None
        self._num_seen = 0

    # ------------------------------------------------------------------ set-up
    @property
    def num_datasets(self) -> int:
        return len(self.dataset_prefixes)

    @property
    def dataset_meta(self):
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta) -> None:
        """A list (one metainfo per dataset, from ``ConcatDataset``) goes metric by metric; a
        single dict (all datasets share their metainfo) goes to every metric."""
        self._dataset_meta = dataset_meta
        if isinstance(dataset_meta, Sequence) and not isinstance(dataset_meta, dict):
            if len(dataset_meta) != self.num_datasets:
                raise ValueError(f'the ConcatDataset has {len(dataset_meta)} datasets but '
                                 f'dataset_prefixes names {self.num_datasets}')
            for meta, metric in zip(dataset_meta, self.metrics):
                metric.dataset_meta = meta
            for metric in self.metrics[self.num_datasets:]:
                metric.dataset_meta = dataset_meta[0]
        else:
            for metric in self.metrics:
                metric.dataset_meta = dataset_meta
        self._setups = True

    def _cumulative_sizes(self) -> List[int]:
        meta = self._dataset_meta
        if meta is None:
            raise RuntimeError('MultiDatasetMeanEvaluator needs dataset_meta with '
                               "'cumulative_sizes' (set from a ConcatDataset by the test loop)")
        first = meta if isinstance(meta, dict) else meta[0]
        if 'cumulative_sizes' not in first:
            raise RuntimeError('MultiDatasetMeanEvaluator needs a ConcatDataset (its metainfo '
                               "carries 'cumulative_sizes'); got a dataset without it")
        sizes = list(first['cumulative_sizes'])
        if len(sizes) != self.num_datasets:
            raise ValueError(f'the ConcatDataset has {len(sizes)} datasets but '
                             f'dataset_prefixes names {self.num_datasets}')
        return sizes

    # ------------------------------------------------------------------ process
    def process(self, data_samples: Sequence[BaseDataElement], data_batch=None) -> None:
        sizes = self._cumulative_sizes()
        total = sizes[-1]
        rank, world_size = get_dist_info()
        samples = []
        for data in data_samples:
            samples.append(data.to_dict() if isinstance(data, BaseDataElement) else data)
        owners = []
        for _ in samples:
            global_idx = (rank + self._num_seen * world_size) % max(total, 1)
            self._num_seen += 1
            owners.append(bisect.bisect_right(sizes, global_idx))
        for i, metric in enumerate(self.metrics[:self.num_datasets]):
            mine = [s for s, owner in zip(samples, owners) if owner == i]
            start = len(metric.results)
            if mine:
                metric.process(data_batch, mine)
            added = metric.results[start:]
            if len(added) != len(mine):
                raise RuntimeError(f'{type(metric).__name__} stored {len(added)} results for '
                                   f'{len(mine)} data samples; MultiDatasetMeanEvaluator needs '
                                   'exactly one result per sample')
            del metric.results[start:]
            it = iter(added)
            metric.results.extend(next(it) if owner == i else None for owner in owners)
        extra = [
            dict(s, dataset_name=self.dataset_prefixes[owner]) for s, owner in zip(samples, owners)
        ]
        for metric in self.metrics[self.num_datasets:]:
            metric.process(data_batch, extra)

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, size: int) -> dict:
        sizes = self._cumulative_sizes()
        if size != sizes[-1]:
            raise ValueError(f'evaluate(size={size}) but the ConcatDataset has {sizes[-1]} '
                             'samples')
        logger = MMLogger.get_current_instance()
        metrics_results = OrderedDict()
        per_dataset = []
        for prefix, start, end, metric in zip(self.dataset_prefixes, [0] + sizes[:-1], sizes,
                                               self.metrics):
            results = collect_results(metric.results, size, metric.collect_device)
            if is_main_process():
                results = _to_cpu(results)[start:end]
                stray = sum(r is None for r in results)
                if stray:
                    raise RuntimeError(
                        f'{prefix}: {stray} of its {end - start} samples were not processed by '
                        'its metric; the test loop must use DefaultSampler(shuffle=False)')
                if not results:
                    logger.warning(f'{prefix}: no sample to evaluate')
                    _metrics = {}
                else:
                    logger.info(f'================ {prefix} ================')
                    _metrics = metric.compute_metrics(results)
                final_prefix = '/'.join((prefix, metric.prefix)) if metric.prefix else prefix
                keyed = OrderedDict()
                for k, v in _metrics.items():
                    keyed[f'{metric.prefix}/{k}' if metric.prefix else k] = v
                per_dataset.append((prefix, keyed))
                for k, v in _metrics.items():
                    name = f'{final_prefix}/{k}'
                    if name in metrics_results:
                        raise ValueError(f'duplicate metric name {name}')
                    metrics_results[name] = v
            metric.results.clear()
        if is_main_process():
            metrics_results.update(self._means(per_dataset, logger))
        for metric in self.metrics[self.num_datasets:]:
            _results = metric.evaluate(size)
            if is_main_process():
                for name in _results:
                    if name in metrics_results:
                        raise ValueError(f'duplicate metric name {name}')
                metrics_results.update(_results)
        self._num_seen = 0
        out = [metrics_results] if is_main_process() else [None]
        broadcast_object_list(out)
        return out[0]

    def _means(self, per_dataset, logger) -> OrderedDict:
        keys = []
        for _, keyed in per_dataset:
            keys += [k for k, v in keyed.items() if _is_number(v) and k not in keys]
        means = OrderedDict()
        for key in keys:
            values, undefined = [], []
            for prefix, keyed in per_dataset:
                if key not in keyed or not _is_number(keyed[key]):
                    continue
                value = float(keyed[key])
                if np.isfinite(value) and value >= 0:
                    values.append(value)
                else:
                    undefined.append(prefix)
            if undefined:
                shown = ', '.join(undefined[:5]) + (', ...' if len(undefined) > 5 else '')
                logger.warning(f'{key}: undefined (-1 / NaN) on {len(undefined)} dataset(s) '
                               f'({shown}), left out of the mean')
            means[f'{self.mean_prefix}/{key}'] = float(np.mean(values)) if values else -1.0
        table_keys = self.table_keys
        if table_keys is None:
            table_keys = [k for k in keys if k.endswith(('mAP', 'mAP_50', 'mAP_75'))]
        if table_keys and per_dataset:
            rows = []
            for prefix, keyed in per_dataset:
                rows.append([prefix] + [_fmt(keyed.get(k)) for k in table_keys])
            rows.append([f'**{self.mean_prefix}** ({len(per_dataset)} datasets)'] +
                        [_fmt(means.get(f'{self.mean_prefix}/{k}')) for k in table_keys])
            logger.info('Per-dataset results:\n' + markdown_table(['dataset'] + table_keys, rows))
        return means


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _fmt(value) -> str:
    if value is None:
        return '-'
    if _is_number(value):
        return f'{float(value):.4f}'
    return str(value)
