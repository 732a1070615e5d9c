"""Datasets and data transforms, registered into mmdet's ``DATASETS`` / ``TRANSFORMS``."""
from . import transforms  # noqa: F401
from .sam3_prompt_coco_dataset import SAM3PromptCocoDataset, resolve_split_layout

__all__ = ['SAM3PromptCocoDataset', 'resolve_split_layout']
