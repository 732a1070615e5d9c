"""Metric math as plain functions, usable without an mmengine runner."""
from .cgf1 import (COCO_IOU_THRS, DEFAULT_SCORE_THR, accumulate_cgf1, bbox_iou, cgf1_from_ious,
                   mask_iou, matched_true_positives, summarize_cgf1)
from .click_metrics import number_of_clicks, summarize_click_ious
from .click_simulation import Click, mask_iou_single, masks_iou, next_click
from .validate import (MalformedPredictionError, ValidatedPredictions, validate_pred_instances)

__all__ = [
    'COCO_IOU_THRS', 'DEFAULT_SCORE_THR', 'accumulate_cgf1', 'bbox_iou', 'cgf1_from_ious',
    'mask_iou', 'matched_true_positives', 'summarize_cgf1', 'MalformedPredictionError',
    'ValidatedPredictions', 'validate_pred_instances', 'number_of_clicks',
    'summarize_click_ious', 'Click', 'mask_iou_single', 'masks_iou', 'next_click'
]
