"""mmdet ``CocoMetric`` with input checks (``SAM3CocoMetric``) and a seen / unseen split
(``SeenUnseenCocoMetric``).

Both subclass mmdet's :class:`~mmdet.evaluation.CocoMetric`: the AP math, the result json, the
keys and the options (``metric``, ``classwise``, ``metric_items``, ``outfile_prefix``...) are
mmdet's; on valid predictions the numbers are identical to ``CocoMetric``.

``SAM3CocoMetric`` checks every data sample in :meth:`process` with the shared
:func:`~mmsam3.evaluation.functional.validate_pred_instances` (missing keys, NaN / inf, inverted
boxes, labels outside ``dataset_meta['classes']``, masks of the wrong size for ``'segm'``) and
raises a ``ValueError`` naming the image instead of failing deep inside pycocotools. Boxes reaching
outside the image are clipped to it (``clip_boxes=True``, one warning per evaluation with the
count) or left as they are (``clip_boxes=False``, mmdet's behaviour).

``SeenUnseenCocoMetric`` (retention after fine-tuning) additionally reports AP on two subsets of
the categories: ``seen`` (the concepts a fine-tune trained on) and ``unseen`` (the others). Each
subset is evaluated by mmdet's own ``compute_metrics`` with COCOeval ``params.catIds`` restricted
to the subset (predictions of other categories dropped, which changes nothing for the kept ones:
COCOeval matches per category). Keys (after the ``coco/`` prefix): mmdet's overall keys
(``bbox_mAP``, ``segm_mAP_50``...) plus ``seen_bbox_mAP``, ``unseen_bbox_mAP``, ... for every
key of the subset evaluation. A subset without categories is skipped with a warning. A
category without ground truth on the evaluated images has AP -1 in COCOeval and is left out of
the subset mean (as in the overall mean).

Config::

    val_evaluator = dict(type='SeenUnseenCocoMetric', ann_file=..., metric=['bbox', 'segm'],
                         seen_classes=['red circle', 'blue square'])  # names (or category ids)
    # or: seen_ann_file='data/shapes/train/_annotations.coco.json'  (the fine-tune's train json;
    #      seen = its categories with at least one non-crowd annotation, matched by name)
"""
import json
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger

from ..functional.validate import validate_pred_instances

SPLITS = ('seen', 'unseen')


@METRICS.register_module()
class SAM3CocoMetric(CocoMetric):
    """mmdet ``CocoMetric`` that validates the predictions first (module docstring).

    Args:
        clip_boxes: clip predicted boxes to the image (warns with the count) instead of
            passing them on unchanged.
        **kwargs: every ``CocoMetric`` argument.
    """

    def __init__(self, *args, clip_boxes: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clip_boxes = clip_boxes
        self._num_clipped = 0
        self._num_clipped_images = 0

    def _num_classes(self) -> Optional[int]:
        meta = self.dataset_meta
        if isinstance(meta, dict) and 'classes' in meta:
            return len(meta['classes'])
        return None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        checked_samples = []
        for data_sample in data_samples:
            checked = validate_pred_instances(
                data_sample,
                num_classes=self._num_classes(),
                require_masks='segm' in self.metrics,
                clip_boxes=self.clip_boxes)
            if checked.num_clipped:
                self._num_clipped += checked.num_clipped
                self._num_clipped_images += 1
            pred = dict(
                bboxes=torch.from_numpy(checked.bboxes).float(),
                scores=torch.from_numpy(checked.scores).float(),
                labels=torch.from_numpy(checked.labels))
            old_pred = data_sample['pred_instances']
            if checked.masks is not None:
                masks = checked.masks
                pred['masks'] = torch.as_tensor(masks) if isinstance(masks, np.ndarray) else masks
            if 'mask_scores' in old_pred:
                pred['mask_scores'] = old_pred['mask_scores']
            sample = dict(data_sample) if isinstance(data_sample, dict) else \
                data_sample.to_dict()
            sample['pred_instances'] = pred
            checked_samples.append(sample)
        super().process(data_batch, checked_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if self._num_clipped:
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: clipped {self._num_clipped} predicted box(es) reaching '
                f'outside the image on {self._num_clipped_images} image(s) of this rank')
            self._num_clipped = self._num_clipped_images = 0
        return super().compute_metrics(results)


def _read_seen_names(seen_ann_file: str, backend_args=None) -> List[str]:
    with get_local_path(seen_ann_file, backend_args=backend_args) as path:
        with open(path) as f:
            data = json.load(f)
    try:
        cats = {c['id']: c['name'] for c in data['categories']}
        used = {a['category_id'] for a in data.get('annotations', []) if not a.get('iscrowd', 0)}
    except (KeyError, TypeError) as e:
        raise ValueError(f'seen_ann_file {seen_ann_file} is not a COCO json ({e!r})') from e
    return [name for cat_id, name in cats.items() if cat_id in used]


@METRICS.register_module()
class SeenUnseenCocoMetric(SAM3CocoMetric):
    """``SAM3CocoMetric`` plus AP on the ``seen`` and ``unseen`` categories (module docstring).

    Args:
        seen_classes: the seen categories, as names of ``dataset_meta['classes']`` or category
            ids of ``ann_file``. Exactly one of ``seen_classes`` / ``seen_ann_file``.
        seen_ann_file: a COCO json (typically the fine-tuning train json); its categories with at
            least one non-crowd annotation are the seen ones (matched by name).
        **kwargs: every ``SAM3CocoMetric`` / ``CocoMetric`` argument.
    """

    def __init__(self,
                 *args,
                 seen_classes: Optional[Sequence[Union[str, int]]] = None,
                 seen_ann_file: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if (seen_classes is None) == (seen_ann_file is None):
            raise ValueError('SeenUnseenCocoMetric needs exactly one of seen_classes (names or '
                             'category ids) and seen_ann_file (a COCO json)')
        if seen_ann_file is not None:
            seen_classes = _read_seen_names(seen_ann_file, self.backend_args)
        if isinstance(seen_classes, (str, int)):
            seen_classes = [seen_classes]
        self.seen_classes = list(seen_classes)
        if any(m in ('proposal', 'proposal_fast') for m in self.metrics):
            raise ValueError("SeenUnseenCocoMetric supports metric 'bbox' and 'segm' only")

    def split_labels(self) -> Dict[str, List[int]]:
        """Contiguous labels of each split, from ``dataset_meta['classes']`` and ``cat_ids``."""
        classes = list(self.dataset_meta['classes'])
        cat_ids = list(self.cat_ids) if self.cat_ids is not None else [None] * len(classes)
        seen, unknown = set(), []
        for item in self.seen_classes:
            if isinstance(item, str):
                if item in classes:
                    seen.add(classes.index(item))
                    continue
            elif item in cat_ids:
                seen.add(cat_ids.index(item))
                continue
            unknown.append(item)
        if unknown:
            MMLogger.get_current_instance().warning(
                f'SeenUnseenCocoMetric: seen classes {unknown} are not categories of this dataset '
                f'(classes: {classes}); ignored')
        return dict(seen=sorted(seen), unseen=[i for i in range(len(classes)) if i not in seen])

    @staticmethod
    def _restrict(pred: dict, label_map: Dict[int, int]) -> dict:
        labels = np.asarray(pred['labels']).reshape(-1)
        keep = np.flatnonzero(np.isin(labels, list(label_map)))
        out = dict(pred)
        out['labels'] = np.array([label_map[int(v)] for v in labels[keep]], dtype=np.int64)
        for key in ('bboxes', 'scores', 'mask_scores'):
            if key in pred:
                out[key] = np.asarray(pred[key])[keep]
        if 'masks' in pred:
            out['masks'] = [pred['masks'][i] for i in keep]
        return out

    def compute_metrics(self, results: list) -> Dict[str, float]:
        logger = MMLogger.get_current_instance()
        # Overall first: resolves cat_ids / img_ids (and the gt json without ann_file).
        eval_results = OrderedDict(super().compute_metrics(results))
        if self.format_only:
            return eval_results
        full_cat_ids = list(self.cat_ids)
        outfile_prefix = self.outfile_prefix
        try:
            for split, labels in self.split_labels().items():
                if not labels:
                    logger.warning(f'SeenUnseenCocoMetric: no {split} category; {split} AP '
                                   'is not reported')
                    continue
                names = [self.dataset_meta['classes'][i] for i in labels]
                logger.info(f'Evaluating the {len(labels)} {split} categories: {names}')
                label_map = {label: i for i, label in enumerate(labels)}
                split_results = [(gt, self._restrict(pred, label_map)) for gt, pred in results]
                # mmdet maps label i -> cat_ids[i] and evaluates params.catIds = cat_ids
                self.cat_ids = [full_cat_ids[i] for i in labels]
                if outfile_prefix is not None:
                    self.outfile_prefix = f'{outfile_prefix}.{split}'
                split_metrics = CocoMetric.compute_metrics(self, split_results)
                for key, value in split_metrics.items():
                    eval_results[f'{split}_{key}'] = value
        finally:
            self.cat_ids = full_cat_ids
            self.outfile_prefix = outfile_prefix
        return eval_results
