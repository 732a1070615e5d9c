"""BuildPromptQueries: choose the text prompts of one image (re-drawn every time it is loaded).

Training (``prompt_all_classes`` False): every category with at least one ground-truth instance
is a positive prompt; ``num_negative_prompts`` absent categories are drawn at random as negative
prompts (-1 = all absent categories, the official ``include_negatives=True`` with one chunk;
0 = none). Test (``prompt_all_classes`` True, set by the dataset in test mode): every category is
prompted so that mmdet's ``CocoMetric`` sees them all. Prompts are kept in category order.

Unset arguments (None) are read from the data info written by ``SAM3PromptCocoDataset``
(``prompt_texts``, ``num_negative_prompts``, ``prompt_all_classes``), so the dataset option
``num_negative_prompts`` drives this transform; an explicit argument here overrides it.

Required keys: ``prompt_texts`` (tuple[str], one phrase per category) unless ``classes`` is given;
``gt_bboxes_labels`` (N,) int64 in training.
Added keys (metainfo of the packed sample):
- ``texts``: list[str] (P,), one noun phrase per prompt;
- ``prompt_labels``: list[int] (P,), contiguous category index of each prompt (same space as
  ``gt_bboxes_labels``).
Returns None (the dataset then draws another image in training) when an image ends up with no
prompt and ``skip_empty`` is True, like the official loader that rejects datapoints without
queries.
"""
from typing import Dict, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class BuildPromptQueries(BaseTransform):
    """Build ``texts`` / ``prompt_labels`` from the ground-truth categories of an image.

    Args:
        num_negative_prompts (int, optional): absent categories prompted as negatives; -1 = all.
            None: take the dataset's value (``results['num_negative_prompts']``, default -1).
        prompt_all_classes (bool, optional): prompt every category (evaluation). None: take
            ``results['prompt_all_classes']`` (the dataset's ``test_mode``), default False.
        classes (Sequence[str], optional): phrase per category, used when the data info has no
            ``prompt_texts`` (e.g. with a plain mmdet ``CocoDataset``).
        prompt_map (dict, optional): extra ``{phrase: new phrase}`` override.
        shuffle (bool): shuffle the prompt order (default False: category order).
        skip_empty (bool): return None when no prompt is left (training only).
    """

    def __init__(self,
                 num_negative_prompts: Optional[int] = None,
                 prompt_all_classes: Optional[bool] = None,
                 classes: Optional[Sequence[str]] = None,
                 prompt_map: Optional[Dict[str, str]] = None,
                 shuffle: bool = False,
                 skip_empty: bool = True) -> None:
        if num_negative_prompts is not None and num_negative_prompts < -1:
            raise ValueError(f'num_negative_prompts must be >= -1, got {num_negative_prompts}')
        self.num_negative_prompts = num_negative_prompts
        self.prompt_all_classes = prompt_all_classes
        self.classes = tuple(classes) if classes is not None else None
        self.prompt_map = dict(prompt_map or {})
        self.shuffle = shuffle
        self.skip_empty = skip_empty

    def _texts(self, results: dict) -> Sequence[str]:
        texts = results.get('prompt_texts') or self.classes
        if not texts:
            raise KeyError('BuildPromptQueries needs the category phrases: use '
                           "SAM3PromptCocoDataset (it adds 'prompt_texts') or pass classes=...")
        return [self.prompt_map.get(t, t) for t in texts]

    def transform(self, results: dict) -> Optional[dict]:
        if results.get('text') is not None and not results.get('prompt_texts'):
            # Prompts given by the user (mmdet's DetInferencer `texts=`): keep them as they are.
            return results
        texts = self._texts(results)
        num_classes = len(texts)
        prompt_all = self.prompt_all_classes
        if prompt_all is None:
            prompt_all = bool(results.get('prompt_all_classes', False))

        if prompt_all:
            prompt_labels = list(range(num_classes))
        else:
            labels = np.asarray(results.get('gt_bboxes_labels', np.zeros(0, np.int64)))
            flags = results.get('gt_ignore_flags')
            if flags is not None and len(flags) == len(labels):
                # crowd-only categories are not positives (official: query with no target)
                labels = labels[~np.asarray(flags, dtype=bool)]
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"gt label out of range [0, {num_classes}) in "
                                 f"{results.get('img_path', '<image>')}: {labels.tolist()}")
            positives = sorted(set(int(x) for x in labels.tolist()))
            pool = [c for c in range(num_classes) if c not in set(positives)]
            k = self.num_negative_prompts
            if k is None:
                k = int(results.get('num_negative_prompts', -1))
            if 0 <= k < len(pool):
                negatives = np.random.choice(pool, size=k, replace=False).tolist() if k else []
            else:
                negatives = pool
            prompt_labels = sorted(positives + [int(c) for c in negatives])
            if not prompt_labels and self.skip_empty:
                return None
        if self.shuffle:
            prompt_labels = [prompt_labels[i] for i in np.random.permutation(len(prompt_labels))]
        results['texts'] = [texts[i] for i in prompt_labels]
        results['prompt_labels'] = prompt_labels
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_negative_prompts={self.num_negative_prompts}, '
                f'prompt_all_classes={self.prompt_all_classes}, shuffle={self.shuffle})')
