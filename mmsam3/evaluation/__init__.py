"""Evaluation metrics, registered into ``mmdet.registry.METRICS``."""
from . import metrics  # noqa: F401
