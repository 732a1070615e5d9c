"""SAM 3's one-to-many (o2m) matcher for the DAC-DETR o2m query half.

Official ``BinaryOneToManyMatcher`` as configured for RF100-VL / ODinW training
(``alpha=0.3, threshold=0.4, topk=4``; the class default ``topk`` is 6). For every target the
score ``C = alpha * sigmoid(logit) + (1 - alpha) * IoU(pred, gt)`` (higher is better) of all Q
queries is computed; query q is matched to target t when

* ``C[q, t]`` is strictly above the ``1 - topk / Q`` quantile of ``C[:, t]`` over the queries
  (about the top ``topk`` queries), and
* ``C[q, t] > threshold``.

A query may match several targets (no exclusivity, exactly as the official code). Padded
targets and prompts with no target yield no match. The official criterion uses it only on the
final-layer o2m outputs (``use_o2m_matcher_on_o2m_aux=False``).

Deviations, both only where the official code fails: ``1 - topk / Q`` is clipped to [0, 1] (the
official ``torch.quantile`` raises when Q < topk), and non-finite scores are replaced by
``nonfinite_score`` (a very low score: never matched) with a :class:`NonFiniteCostWarning`
and a count, like :class:`SAM3HungarianAssigner`.
"""
import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from torch import Tensor

from .sam3_hungarian_assigner import (MatchIndices, _packed_offsets, empty_match_indices,
                                      sanitize_costs)


@TASK_UTILS.register_module()
class SAM3OneToManyAssigner:
    """One-to-many matcher of SAM 3 (official o2m matcher).

    Args:
        alpha (float): Weight of the score against the IoU. Official 0.3.
        threshold (float): Minimum matching score. Official 0.4.
        topk (int): About how many queries each target gets. Official config 4.
        nonfinite_score (float): Replacement for NaN/inf scores.

    ``match(pred_logits (B, Q[, 1]), pred_boxes (B, Q, 4) cxcywh, gt_boxes_padded (B, N, 4)
    cxcywh, num_gts (B,)) -> MatchIndices`` ordered by (prompt, query, target); or
    ``__call__(outputs, targets)`` with the official key names.
    """

    def __init__(self, alpha: float = 0.3, threshold: float = 0.4, topk: int = 4,
                 nonfinite_score: float = -1e6) -> None:
        self.alpha = alpha
        self.threshold = threshold
        self.topk = topk
        self.nonfinite_score = float(nonfinite_score)
        self.num_nonfinite_costs = 0
        self.last_num_nonfinite_costs = 0

    @torch.no_grad()
    def match(self, pred_logits: Tensor, pred_boxes: Tensor, gt_boxes_padded: Tensor,
              num_gts: Tensor) -> MatchIndices:
        device = pred_boxes.device
        num_prompts, num_queries = pred_boxes.shape[:2]
        num_targets = gt_boxes_padded.shape[1]
        if num_targets == 0 or num_queries == 0:
            return empty_match_indices(device)
        prob = pred_logits.detach().float().reshape(num_prompts, num_queries).sigmoid()
        iou = bbox_overlaps(
            bbox_cxcywh_to_xyxy(pred_boxes.detach().float()),
            bbox_cxcywh_to_xyxy(gt_boxes_padded.float()), mode='iou')
        score = self.alpha * prob.unsqueeze(-1) + (1 - self.alpha) * iou
        score = sanitize_costs(score, self.nonfinite_score, self, 'matching score')
        q = min(max(1 - self.topk / num_queries, 0.0), 1.0)
        top = score > torch.quantile(score, q, dim=1, keepdim=True)
        num_gts = torch.as_tensor(num_gts).to(device=device, dtype=torch.long).reshape(-1)
        real = torch.arange(num_targets, device=device)[None] < num_gts[:, None]
        matches = top & (score > self.threshold) & real.unsqueeze(1)
        batch_idx, src_idx, tgt_idx = torch.nonzero(matches, as_tuple=True)
        return MatchIndices(batch_idx, src_idx, tgt_idx + _packed_offsets(num_gts)[batch_idx])

    def __call__(self, outputs: dict, targets: dict) -> MatchIndices:
        return self.match(outputs['pred_logits'], outputs['pred_boxes'],
                          targets['boxes_padded'], targets['num_boxes'])
