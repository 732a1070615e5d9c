"""Match costs of SAM 3's one-to-one matcher, as mmdet ``BaseMatchCost`` subclasses.

SAM 3 detects a single "concept" per prompt, so classification is binary: one logit per query.
All boxes here are **normalised** ``(cx, cy, w, h)`` in [0, 1] (the frame of the network input).

Each cost exposes two entry points:

* ``batched(...)``: tensors with a leading batch dimension, used by
  :class:`~mmsam3.models.task_modules.assigners.SAM3HungarianAssigner`; returns (B, Q, N).
* ``__call__(pred_instances, gt_instances, img_meta=None)``: the mmdet interface (one prompt);
  ``pred_instances.scores`` are logits (Q,) or (Q, 1) and ``pred_instances.bboxes`` /
  ``gt_instances.bboxes`` are normalised cxcywh; returns (Q, N).

The returned costs already include ``weight``. Lower is better.
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.structures import InstanceData
from torch import Tensor


def _logits_1d(scores: Tensor) -> Tensor:
    """(Q,) or (Q, 1) logits -> (Q,)."""
    return scores.reshape(scores.shape[0]) if scores.dim() > 1 else scores


@TASK_UTILS.register_module()
class BinaryFocalLogitCost(BaseMatchCost):
    """Focal-loss shaped classification cost of a single-logit query, broadcast over targets.

    With ``p = sigmoid(x)``:
    ``cost = -alpha * (1 - p)^gamma * log(p) + (1 - alpha) * p^gamma * log(1 - p)``,
    where both logs are computed as ``logsigmoid(x)`` / ``logsigmoid(-x)`` so that large logits
    stay finite. This is the official SAM 3 o2o class cost (``focal=True``, ``stable=False``);
    mmdet's ``FocalLossCost`` uses ``log(p + 1e-12)`` instead, which gives different numbers for
    confident queries, hence this class.

    Args:
        weight (float): Multiplier of the cost. Official value 2.0.
        alpha (float): Positive/negative balance. Official value 0.25.
        gamma (float): Focusing exponent. Official value 2.
    """

    def __init__(self, weight: Union[float, int] = 2.0, alpha: float = 0.25,
                 gamma: float = 2.0) -> None:
        super().__init__(weight=weight)
        self.alpha = alpha
        self.gamma = gamma

    def per_query(self, logits: Tensor) -> Tensor:
        """Unweighted cost of every query, same shape as ``logits``."""
        prob = logits.sigmoid()
        pos = -self.alpha * (1 - prob)**self.gamma * F.logsigmoid(logits)
        neg = (1 - self.alpha) * prob**self.gamma * F.logsigmoid(-logits)
        return pos + neg

    def batched(self, logits: Tensor, num_gts: int) -> Tensor:
        """``logits`` (B, Q) -> weighted cost (B, Q, num_gts)."""
        cost = self.per_query(logits).unsqueeze(-1).expand(*logits.shape, num_gts)
        return self.weight * cost

    def __call__(self, pred_instances: InstanceData, gt_instances: InstanceData,
                 img_meta: Optional[dict] = None, **kwargs) -> Tensor:
        logits = _logits_1d(pred_instances.scores)
        return self.batched(logits[None], len(gt_instances.bboxes))[0]


@TASK_UTILS.register_module()
class CxcywhBoxL1Cost(BaseMatchCost):
    """L1 distance between normalised cxcywh boxes (``torch.cdist(p=1)``).

    Args:
        weight (float): Multiplier of the cost. Official value 5.0.
    """

    def __init__(self, weight: Union[float, int] = 5.0) -> None:
        super().__init__(weight=weight)

    def batched(self, pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """(B, Q, 4) and (B, N, 4) cxcywh -> weighted cost (B, Q, N)."""
        return self.weight * torch.cdist(pred_boxes, gt_boxes, p=1)

    def __call__(self, pred_instances: InstanceData, gt_instances: InstanceData,
                 img_meta: Optional[dict] = None, **kwargs) -> Tensor:
        return self.batched(pred_instances.bboxes[None], gt_instances.bboxes[None])[0]


@TASK_UTILS.register_module()
class CxcywhGIoUCost(BaseMatchCost):
    """Negative generalised IoU between normalised cxcywh boxes.

    Uses mmdet's :func:`bbox_overlaps` (``mode='giou'``). Its ``eps=1e-6`` floor on the union and
    the enclosing area only binds when both boxes are below 1e-6 of the image area (the official
    code returns NaN there); any real target is larger, so the numbers equal the official ones.

    Args:
        weight (float): Multiplier of the cost. Official value 2.0.
    """

    def __init__(self, weight: Union[float, int] = 2.0) -> None:
        super().__init__(weight=weight)

    def batched(self, pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """(B, Q, 4) and (B, N, 4) cxcywh -> weighted cost (B, Q, N)."""
        giou = bbox_overlaps(
            bbox_cxcywh_to_xyxy(pred_boxes), bbox_cxcywh_to_xyxy(gt_boxes), mode='giou')
        return self.weight * -giou

    def __call__(self, pred_instances: InstanceData, gt_instances: InstanceData,
                 img_meta: Optional[dict] = None, **kwargs) -> Tensor:
        return self.batched(pred_instances.bboxes[None], gt_instances.bboxes[None])[0]
