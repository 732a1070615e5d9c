"""Metrics of mmsam3."""
from .cgf1_metric import CgF1Metric
from .interactive_click_metric import InteractiveClickMetric
from .sam3_coco_metric import SAM3CocoMetric, SeenUnseenCocoMetric

__all__ = ['CgF1Metric', 'InteractiveClickMetric', 'SAM3CocoMetric', 'SeenUnseenCocoMetric']
