"""FilterPromptsWithTooManyTargets: drop prompts with more than ``max_num_targets`` instances.

Mirrors the official ``FilterFindQueriesWithTooManyOut(max_num_objects=200)``: a prompt whose
category has more targets than the model has queries (200) is removed, together with that
category's instances (they are no longer the target of any prompt). Runs after
:class:`BuildPromptQueries`.

Required keys: ``texts``, ``prompt_labels``, ``gt_bboxes_labels`` (N,).
Modified keys: ``texts``, ``prompt_labels``, optional ``prompt_boxes`` / ``prompt_box_labels``,
and the gt keys (``gt_bboxes``, ``gt_bboxes_labels``, ``gt_masks``, ``gt_ignore_flags``).
Returns None when no prompt is left and ``skip_empty`` is True.
"""
from collections import Counter
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ._utils import select_instances


@TRANSFORMS.register_module()
class FilterPromptsWithTooManyTargets(BaseTransform):
    """Args:
        max_num_targets (int): largest number of instances a kept prompt may have (200).
        skip_empty (bool): return None when every prompt was dropped.
    """

    def __init__(self, max_num_targets: int = 200, skip_empty: bool = True) -> None:
        self.max_num_targets = max_num_targets
        self.skip_empty = skip_empty

    def transform(self, results: dict) -> Optional[dict]:
        labels = np.asarray(results.get('gt_bboxes_labels', np.zeros(0, np.int64)))
        flags = results.get('gt_ignore_flags')
        counted = labels if flags is None else labels[~np.asarray(flags, bool)]
        counts = Counter(int(x) for x in counted.tolist())
        drop = {c for c, n in counts.items() if n > self.max_num_targets}
        if not drop:
            return results
        keep_p = [i for i, c in enumerate(results['prompt_labels']) if c not in drop]
        for key in ('texts', 'prompt_labels', 'prompt_boxes', 'prompt_box_labels'):
            if key in results:
                results[key] = [results[key][i] for i in keep_p]
        select_instances(results, ~np.isin(labels, sorted(drop)))
        if not keep_p and self.skip_empty:
            return None
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(max_num_targets={self.max_num_targets})'
