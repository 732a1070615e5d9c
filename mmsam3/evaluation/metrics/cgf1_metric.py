"""``CgF1Metric``: SAM 3's concept-level F1 (cgF1) for mmdet data samples.

cgF1 = positive_micro_F1 x IL_MCC, computed over (image, prompted category) *pairs*; the math
lives in :mod:`mmsam3.evaluation.functional.cgf1` (see its docstring for every formula).

How an mmdet dataset maps onto the official SA-Co evaluation (``CGF1Evaluator``, where every
"image" of the ground-truth file is one (image, noun phrase) pair):

- one pair per (``img_id``, category) for every category prompted on the image: metainfo
  ``prompt_labels`` (contiguous indices; duplicates collapse), or all ``dataset_meta['classes']``
  when the key is absent (COCO-style exhaustive prompting). A category prompted on an image
  without ground truth of it is a *negative* pair: any detection kept on it is an image-level FP.
- every pair counts as instance-exhaustive (``is_instance_exhaustive=True``); only the
  processed data samples are evaluated (not every image of ``ann_file``).
- ground truth of a pair: the non-crowd instances of that category. Crowd instances
  (``iscrowd=1`` / ``ignore_flag=1`` / ``ignored_instances``) are dropped entirely, so a
  detection on a crowd region is a false positive and a pair with only crowd ground truth is
  negative (official behaviour).
- detections of a pair: ``pred_instances`` with ``labels == category`` and
  ``scores >= score_thr`` (official threshold 0.5), in prediction order.
- the oracle mode of the official evaluator (best of several ground-truth files) is not
  supported.

Inputs of :meth:`CgF1Metric.process`, per data sample (dict or ``DetDataSample``):

- ``img_id``, ``ori_shape`` (H, W).
- ``pred_instances``: ``bboxes`` (N, 4) xyxy in original-image pixels, ``scores`` (N,),
  ``labels`` (N,) contiguous category indices; ``masks`` for ``'segm'``: (N, H, W) bool/uint8
  tensor or array at the original size, or a list of N COCO RLE dicts.
- optional metainfo ``prompt_labels`` (see above).
- ground truth, first source found:
  1. ``ann_file`` (COCO json): annotations of ``img_id`` (the ann file's image id), category
     ids mapped from contiguous labels through ``dataset_meta['classes']`` names, exactly like
     mmdet's ``CocoMetric``.
  2. ``instances`` (the dataset's raw annotations, as ``CocoMetric`` expects without
     ``ann_file``; add ``'instances'`` to ``PackDetInputs.meta_keys``): ``bbox`` xyxy in
     original pixels, ``bbox_label``, ``ignore_flag``, ``mask`` (polygons or RLE).
  3. ``gt_instances``: ``bboxes`` xyxy in the network-input frame, divided by metainfo
     ``scale_factor`` (w, h) to return to the original frame; ``labels``; ``masks`` (only
     usable for ``'segm'`` when they are at the original size).

Predictions are checked by the shared :func:`~mmsam3.evaluation.functional.validate_pred_instances`
(a ``ValueError`` naming the image id) for missing keys,
mismatched lengths, NaN/inf scores or boxes, inverted boxes (x2 < x1 or y2 < y1), labels
outside the dataset or outside the prompted categories, and masks of the wrong size. Boxes
reaching outside the image are clipped to it when ``clip_boxes=True`` (default; ground truth
is inside the image, so only the overhang changes, and the IoU can only grow); the official
evaluator does not clip, use ``clip_boxes=False`` to reproduce it exactly.

Output of :meth:`compute_metrics` (fractions in [-1, 1], the paper prints x100), for each
``iou_type`` in ``('bbox', 'segm')``, keys ``f'{iou_type}_{name}'`` (the runner prefixes
``'cgf1/'``):

- ``cgF1``, ``cgF1_50``, ``cgF1_75``: mean over IoU 0.50:0.05:0.95, at 0.5, at 0.75;
- the same three for ``positive_micro_F1``, ``positive_micro_precision``, ``positive_macro_F1``,
  ``precision``, ``recall``, ``F1``;
- ``IL_MCC``, ``IL_precision``, ``IL_recall``, ``IL_F1``, ``IL_FPR`` (IoU-independent).

Official key ``cgF1_eval_{iou_type}_{name}@0.5`` corresponds to ``{iou_type}_{name}_50``.
An undefined value (``positive_macro_F1`` when no positive pair has a detection) is ``-1``.

Config (``type='mmdet.CgF1Metric'`` outside ``default_scope='mmdet'``)::

    val_evaluator = dict(type='CgF1Metric', iou_type=['bbox', 'segm'],
                         ann_file='data/coco/annotations/instances_val2017.json')
"""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger

from ..functional.cgf1 import (COCO_IOU_THRS, DEFAULT_SCORE_THR, accumulate_cgf1, bbox_iou,
                               mask_iou, matched_true_positives, summarize_cgf1)
from ..functional.validate import get_field as _get
from ..functional.validate import to_numpy as _to_numpy
from ..functional.validate import validate_pred_instances

_IOU_TYPES = ('bbox', 'segm')


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _segm_to_rle(segm, height: int, width: int) -> dict:
    """COCO polygon list / uncompressed RLE / compressed RLE -> compressed RLE."""
    if isinstance(segm, list):
        return mask_util.merge(mask_util.frPyObjects(segm, height, width))
    if isinstance(segm, dict) and isinstance(segm.get('counts'), list):
        return mask_util.frPyObjects(segm, height, width)
    return segm


def _binary_masks_to_rles(masks: np.ndarray) -> List[dict]:
    """(N, H, W) binary masks -> N compressed RLEs (pycocotools wants (H, W, N), Fortran)."""
    if len(masks) == 0:
        return []
    return mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


@METRICS.register_module()
class CgF1Metric(BaseMetric):
    """SAM 3's cgF1 (positive micro F1 x image-level MCC) over (image, prompted category) pairs.

    See the module docstring for the data mapping, accepted inputs and reported keys.

    Args:
        ann_file: COCO json with the ground truth. When None, ground truth comes from each
            data sample (``instances`` or ``gt_instances``).
        iou_type: ``'bbox'``, ``'segm'`` or a list of both.
        score_thr: detections with ``score >= score_thr`` count (official: 0.5).
        clip_boxes: clip predicted boxes to the image before computing box IoU.
        backend_args: file backend arguments to read ``ann_file``.
        collect_device: ``'cpu'`` or ``'gpu'``, to gather results across ranks.
        prefix: key prefix; ``'cgf1'`` when None.
    """
    default_prefix: Optional[str] = 'cgf1'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 iou_type: Union[str, Sequence[str]] = 'bbox',
                 score_thr: float = DEFAULT_SCORE_THR,
                 clip_boxes: bool = True,
                 backend_args: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        iou_types = [iou_type] if isinstance(iou_type, str) else list(iou_type)
        for t in iou_types:
            if t not in _IOU_TYPES:
                raise ValueError(f"iou_type must be 'bbox', 'segm' or a list of them, got {t!r}")
        if not iou_types:
            raise ValueError('iou_type must not be empty')
        self.iou_types = list(dict.fromkeys(iou_types))
        if not np.isfinite(score_thr):
            raise ValueError(f'score_thr must be finite, got {score_thr}')
        self.score_thr = float(score_thr)
        self.clip_boxes = clip_boxes
        self.iou_thrs = COCO_IOU_THRS
        if ann_file is not None:
            with get_local_path(ann_file, backend_args=backend_args) as local_path:
                self._coco_api = COCO(local_path)
        else:
            self._coco_api = None
        self.cat_ids = None  # contiguous label -> ann_file category id, resolved lazily

    # ------------------------------------------------------------------ inputs
    @property
    def _num_classes(self) -> int:
        if not self.dataset_meta or 'classes' not in self.dataset_meta:
            raise ValueError("CgF1Metric needs dataset_meta['classes'] (set by the Evaluator "
                             'from the dataset) to know which categories exist')
        return len(self.dataset_meta['classes'])

    def _resolve_cat_ids(self) -> None:
        if self.cat_ids is not None:
            return
        classes = self.dataset_meta['classes']
        self.cat_ids = self._coco_api.get_cat_ids(cat_names=classes)
        if len(self.cat_ids) != len(classes):
            raise ValueError(f'ann_file has {len(self.cat_ids)} categories named like the '
                             f"{len(classes)} dataset_meta['classes']; they must all match")

    def _prompted_labels(self, data_sample, img_id) -> List[int]:
        num_classes = self._num_classes
        labels = _get(data_sample, 'prompt_labels')
        if labels is None:
            return list(range(num_classes))
        labels = [int(v) for v in _to_numpy(labels).reshape(-1)]
        bad = [v for v in labels if not 0 <= v < num_classes]
        if bad:
            raise ValueError(f'image {img_id}: prompt_labels {bad} outside the dataset\'s '
                             f'{num_classes} classes')
        return list(dict.fromkeys(labels))

    def _read_predictions(self, data_sample, img_id, height, width, prompted) -> dict:
        # The checks are shared with the other mmsam3 metrics (functional/validate.py).
        checked = validate_pred_instances(
            data_sample,
            num_classes=self._num_classes,
            prompted=prompted,
            require_masks='segm' in self.iou_types,
            clip_boxes=self.clip_boxes)
        masks = None
        if 'segm' in self.iou_types:
            masks = checked.masks
            if not isinstance(masks, list):
                masks = _to_numpy(masks).reshape(len(checked.bboxes), height, width)
        return dict(bboxes=_xyxy_to_xywh(checked.bboxes), scores=checked.scores,
                    labels=checked.labels, masks=masks)

    def _gts_from_ann_file(self, img_id, height, width) -> dict:
        self._resolve_cat_ids()
        if img_id not in self._coco_api.imgs:
            raise ValueError(f'image {img_id}: not an image id of ann_file')
        info = self._coco_api.imgs[img_id]
        file_shape = (info.get('height'), info.get('width'))
        if 'segm' in self.iou_types and file_shape != (height, width):
            raise ValueError(f'image {img_id}: ann_file size (H, W) {file_shape} differs from '
                             f'ori_shape {(height, width)}')
        label_of = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        gts = defaultdict(lambda: dict(bboxes=[], segms=[]))
        for ann in self._coco_api.load_anns(self._coco_api.get_ann_ids(img_ids=[img_id])):
            if ann.get('iscrowd', 0) or ann['category_id'] not in label_of:
                continue
            gt = gts[label_of[ann['category_id']]]
            gt['bboxes'].append(ann['bbox'])
            if 'segm' in self.iou_types:
                if 'segmentation' not in ann:
                    raise ValueError(f'image {img_id}: annotation {ann.get("id")} has no '
                                     "segmentation for iou_type 'segm'")
                gt['segms'].append(self._coco_api.annToRLE(ann))
        return gts

    def _gts_from_instances(self, instances, img_id, height, width) -> dict:
        gts = defaultdict(lambda: dict(bboxes=[], segms=[]))
        for ann in instances:
            if ann.get('ignore_flag', 0):
                continue
            x1, y1, x2, y2 = [float(v) for v in ann['bbox']]
            gt = gts[int(ann['bbox_label'])]
            gt['bboxes'].append([x1, y1, x2 - x1, y2 - y1])
            if 'segm' in self.iou_types:
                if ann.get('mask') is None:
                    raise ValueError(f"image {img_id}: ground-truth instance without 'mask' "
                                     "for iou_type 'segm'")
                gt['segms'].append(_segm_to_rle(ann['mask'], height, width))
        return gts

    def _gts_from_gt_instances(self, data_sample, img_id, height, width) -> dict:
        gt_inst = _get(data_sample, 'gt_instances')
        bboxes = _to_numpy(_get(gt_inst, 'bboxes')).astype(np.float64).reshape(-1, 4)
        labels = _to_numpy(_get(gt_inst, 'labels')).reshape(-1).astype(np.int64)
        scale = _get(data_sample, 'scale_factor')
        if scale is not None:
            w_scale, h_scale = [float(v) for v in scale][:2]
            bboxes = bboxes / np.array([w_scale, h_scale, w_scale, h_scale])
        gts = defaultdict(lambda: dict(bboxes=[], segms=[]))
        rles = None
        if 'segm' in self.iou_types:
            masks = _get(gt_inst, 'masks')
            if masks is None:
                raise ValueError(f"image {img_id}: iou_type 'segm' needs gt_instances.masks")
            masks = masks.to_ndarray() if hasattr(masks, 'to_ndarray') else _to_numpy(masks)
            if masks.shape[1:] != (height, width):
                raise ValueError(f'image {img_id}: gt_instances masks are {masks.shape[1:]}, '
                                 f'not the original size {(height, width)}; give ann_file or '
                                 "pack 'instances' instead")
            rles = _binary_masks_to_rles(masks)
        for i, (box, label) in enumerate(zip(_xyxy_to_xywh(bboxes), labels)):
            gts[int(label)]['bboxes'].append(box.tolist())
            if rles is not None:
                gts[int(label)]['segms'].append(rles[i])
        return gts

    def _read_gts(self, data_sample, img_id, height, width) -> dict:
        if self._coco_api is not None:
            return self._gts_from_ann_file(img_id, height, width)
        instances = _get(data_sample, 'instances')
        if instances is not None:
            return self._gts_from_instances(instances, img_id, height, width)
        if _get(data_sample, 'gt_instances') is not None:
            return self._gts_from_gt_instances(data_sample, img_id, height, width)
        raise ValueError(f'image {img_id}: no ground truth; give ann_file, or data samples with '
                         "'instances' or 'gt_instances'")

    # ------------------------------------------------------------------ metric API
    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Match the predictions of each (image, prompted category) pair and keep the counts.

        Stores, per data sample, ``dict(img_id, pairs=[dict(label, num_gts, num_dets,
        tps={iou_type: (T,) int64})])``; small, so gathering across ranks is cheap.
        """
        for data_sample in data_samples:
            img_id = _get(data_sample, 'img_id')
            if img_id is None:
                raise ValueError("data sample without 'img_id'")
            ori_shape = _get(data_sample, 'ori_shape')
            if ori_shape is None:
                raise ValueError(f"image {img_id}: data sample without 'ori_shape'")
            height, width = int(ori_shape[0]), int(ori_shape[1])
            prompted = self._prompted_labels(data_sample, img_id)
            pred = self._read_predictions(data_sample, img_id, height, width, prompted)
            gts = self._read_gts(data_sample, img_id, height, width)

            kept = pred['scores'] >= self.score_thr
            pairs = []
            for label in prompted:
                det_idx = np.flatnonzero(kept & (pred['labels'] == label))
                gt = gts.get(label, dict(bboxes=[], segms=[]))
                tps = {}
                for iou_type in self.iou_types:
                    if iou_type == 'bbox':
                        ious = bbox_iou(pred['bboxes'][det_idx], gt['bboxes'])
                    else:
                        ious = mask_iou(self._det_rles(pred['masks'], det_idx), gt['segms'])
                    tps[iou_type] = matched_true_positives(ious, self.iou_thrs)
                pairs.append(
                    dict(label=label, num_gts=len(gt['bboxes']), num_dets=len(det_idx), tps=tps))
            self.results.append(dict(img_id=img_id, pairs=pairs))

    @staticmethod
    def _det_rles(masks, idx: np.ndarray) -> List[dict]:
        if isinstance(masks, (list, tuple)):
            return [masks[i] for i in idx]
        return _binary_masks_to_rles(masks[idx])

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Aggregate the per-pair counts of all ranks into the metrics listed in the module
        docstring."""
        logger = MMLogger.get_current_instance()
        seen = set()
        pairs = []
        for res in results:
            for pair in res['pairs']:
                key = (res['img_id'], pair['label'])
                if key in seen:
                    raise ValueError(f"image {res['img_id']}: category {pair['label']} was "
                                     'evaluated twice (the same pair in two data samples)')
                seen.add(key)
                pairs.append(pair)
        if not pairs:
            logger.warning('CgF1Metric: no (image, prompt) pair was evaluated')
        num_gts = [p['num_gts'] for p in pairs]
        num_dets = [p['num_dets'] for p in pairs]
        metrics = {}
        for iou_type in self.iou_types:
            tps = np.array([p['tps'][iou_type] for p in pairs],
                           dtype=np.int64).reshape(len(pairs), len(self.iou_thrs))
            stats = accumulate_cgf1(num_gts, num_dets, tps)
            summary = summarize_cgf1(stats, self.iou_thrs)
            logger.info(f'cgF1 ({iou_type}) over {len(pairs)} pairs: IL TP/FP/TN/FN = '
                        f"{stats['IL_TP']}/{stats['IL_FP']}/{stats['IL_TN']}/{stats['IL_FN']}, "
                        f"cgF1 {summary['cgF1']:.4f}, IL_MCC {summary['IL_MCC']:.4f}, "
                        f"pmF1 {summary['positive_micro_F1']:.4f}")
            for name, value in summary.items():
                metrics[f'{iou_type}_{name}'] = value
        return metrics
