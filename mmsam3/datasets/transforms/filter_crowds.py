"""FilterCrowds: drop crowd instances (official ``FilterCrowds``).

mmdet's ``LoadAnnotations`` sets ``gt_ignore_flags`` = True for ``iscrowd`` annotations (and for
instances whose mask annotation is invalid). ``PackDetInputs`` would route them to
``ignored_instances``; the official pipeline removes crowd objects from the targets altogether,
so we drop them from every gt key before any prompt is built.

Required keys: ``gt_ignore_flags`` (N,) bool (nothing to do when absent).
Modified keys: ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_masks``, ``gt_ignore_flags``.
"""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ._utils import select_instances


@TRANSFORMS.register_module()
class FilterCrowds(BaseTransform):
    """Remove instances flagged ``gt_ignore_flags`` (crowds) from the targets."""

    def transform(self, results: dict) -> dict:
        flags = results.get('gt_ignore_flags')
        if flags is None or len(flags) == 0:
            return results
        return select_instances(results, ~np.asarray(flags, dtype=bool))
