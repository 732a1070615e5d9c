"""Evaluators of mmsam3 (registered into ``mmdet.registry.EVALUATOR``)."""
from .multi_dataset_mean_evaluator import MultiDatasetMeanEvaluator

__all__ = ['MultiDatasetMeanEvaluator']
