"""Metrics of mmsam3."""
from .cgf1_metric import CgF1Metric

__all__ = ['CgF1Metric']
