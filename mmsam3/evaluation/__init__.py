"""Evaluation metrics and evaluators, registered into mmdet's ``METRICS`` / ``EVALUATOR``."""
from . import evaluator, metrics  # noqa: F401
