"""TextQueryToVisual: give positive prompts one ground-truth box as an exemplar prompt.

Like the official ``TextQueryToVisual(probability, keep_text_queries)`` (ODinW text+visual and
visual-only evals): with probability ``probability`` a positive prompt receives one of its ground
truth boxes, chosen at random, as a positive box exemplar; with ``keep_text=False`` that prompt's
text becomes the literal ``'visual'``. Negative prompts get no box. Must run after every
geometric transform (resize / pad) so the boxes are in the network-input frame.

Required keys: ``texts``, ``prompt_labels``, ``gt_bboxes`` (N, 4) xyxy, ``gt_bboxes_labels`` (N,).
Added keys:
- ``prompt_boxes``: list (P,) of float32 tensors (K, 4) xyxy, K in {0, 1};
- ``prompt_box_labels``: list (P,) of int64 tensors (K,), 1 = positive.
"""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes


@TRANSFORMS.register_module()
class TextQueryToVisual(BaseTransform):
    """Args:
        probability (float): chance that a positive prompt gets a box exemplar.
        keep_text (bool): keep the text (True) or replace it with ``'visual'``.
    """

    def __init__(self, probability: float = 1.0, keep_text: bool = True) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f'probability must be in [0, 1], got {probability}')
        self.probability = probability
        self.keep_text = keep_text

    def transform(self, results: dict) -> dict:
        boxes = results.get('gt_bboxes')
        if isinstance(boxes, BaseBoxes):
            boxes = boxes.tensor
        boxes = torch.as_tensor(np.zeros((0, 4)) if boxes is None else boxes,
                                dtype=torch.float32).reshape(-1, 4)
        labels = np.asarray(results.get('gt_bboxes_labels', np.zeros(0, np.int64)))
        flags = results.get('gt_ignore_flags')
        valid = np.ones(len(labels), bool) if flags is None else ~np.asarray(flags, bool)
        texts = list(results['texts'])
        prompt_boxes, prompt_box_labels = [], []
        for i, cat in enumerate(results['prompt_labels']):
            idx = np.flatnonzero((labels == cat) & valid)
            if len(idx) == 0 or np.random.rand() >= self.probability:
                prompt_boxes.append(torch.zeros((0, 4), dtype=torch.float32))
                prompt_box_labels.append(torch.zeros((0, ), dtype=torch.long))
                continue
            j = int(np.random.choice(idx))
            prompt_boxes.append(boxes[j:j + 1].clone())
            prompt_box_labels.append(torch.ones((1, ), dtype=torch.long))
            if not self.keep_text:
                texts[i] = 'visual'
        results['texts'] = texts
        results['prompt_boxes'] = prompt_boxes
        results['prompt_box_labels'] = prompt_box_labels
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(probability={self.probability}, '
                f'keep_text={self.keep_text})')
