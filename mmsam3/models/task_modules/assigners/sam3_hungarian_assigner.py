"""SAM 3's one-to-one (o2o) binary Hungarian matcher.

Same costs as the official ``BinaryHungarianMatcherV2(focal=True, cost_class=2, cost_bbox=5,
cost_giou=2, alpha=0.25, gamma=2)``:

``C = 5 * L1(pred_cxcywh, gt_cxcywh) + 2 * focal_class_cost(logit) + 2 * (-GIoU(pred, gt))``

solved per prompt with :func:`scipy.optimize.linear_sum_assignment`. The presence logit is not
used. Prompts without targets (negative prompts) are skipped: none of their queries is matched.

Non-finite costs: the official matcher passes NaN/inf straight to scipy, which raises
``ValueError: matrix contains invalid numeric entries``. Here every non-finite entry is
replaced by ``nonfinite_cost`` (a large finite value, i.e. "avoid this pair") before scipy runs,
so the assignment is still a valid one-to-one matching; a :class:`NonFiniteCostWarning` is
emitted and the replaced entries are counted in ``num_nonfinite_costs`` (running total) and
``last_num_nonfinite_costs`` (last call).
"""
import warnings
from typing import NamedTuple, Optional

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .match_costs import BinaryFocalLogitCost, CxcywhBoxL1Cost, CxcywhGIoUCost


class NonFiniteCostWarning(RuntimeWarning):
    """A SAM 3 matcher met NaN/inf in its cost matrix and replaced them (see the module doc)."""


class MatchIndices(NamedTuple):
    """Matched (prompt, query, target) triples, all int64 of the same length M.

    * ``batch_idx``: prompt index b in [0, B).
    * ``src_idx``: query index in [0, Q).
    * ``tgt_idx``: index into the **packed** targets of the batch (prompt b's targets occupy
      ``[sum(num_gts[:b]), sum(num_gts[:b+1]))``).
    """
    batch_idx: Tensor
    src_idx: Tensor
    tgt_idx: Tensor


def empty_match_indices(device) -> MatchIndices:
    empty = torch.empty(0, dtype=torch.long, device=device)
    return MatchIndices(empty, empty.clone(), empty.clone())


def sanitize_costs(cost: Tensor, replacement: float, owner, what: str) -> Tensor:
    """Replace non-finite entries of ``cost`` by ``replacement``; count and warn on ``owner``."""
    bad = ~torch.isfinite(cost)
    num_bad = int(bad.sum())
    owner.last_num_nonfinite_costs = num_bad
    if num_bad:
        owner.num_nonfinite_costs += num_bad
        warnings.warn(
            f'{type(owner).__name__}: {num_bad} non-finite {what} entries (NaN/inf in the '
            f'predictions or degenerate boxes) replaced by {replacement:g}; running total '
            f'{owner.num_nonfinite_costs}.', NonFiniteCostWarning, stacklevel=3)
        cost = torch.where(bad, cost.new_tensor(replacement), cost)
    return cost


def _packed_offsets(num_gts: Tensor) -> Tensor:
    """Start of each prompt's targets in the packed target list."""
    return torch.cumsum(num_gts, 0) - num_gts


@TASK_UTILS.register_module()
class SAM3HungarianAssigner(BaseAssigner):
    """One-to-one binary Hungarian matcher of SAM 3 (official o2o matcher costs).

    Args:
        cost_class (float): Weight of :class:`BinaryFocalLogitCost`. Official 2.0.
        cost_bbox (float): Weight of :class:`CxcywhBoxL1Cost`. Official 5.0.
        cost_giou (float): Weight of :class:`CxcywhGIoUCost`. Official 2.0.
        alpha (float): Focal alpha of the class cost. Official 0.25.
        gamma (float): Focal gamma of the class cost. Official 2.
        nonfinite_cost (float): Finite value that replaces NaN/inf cost entries. Legal costs
            stay far below it (|L1| <= 20, |GIoU| <= 2, class cost ~ 0.25 * |logit|).

    Batched use (what :class:`~mmsam3.models.losses.SAM3Criterion` calls):
    ``match(pred_logits (B, Q[, 1]), pred_boxes (B, Q, 4), gt_boxes_padded (B, N, 4),
    num_gts (B,)) -> MatchIndices``; or ``__call__(outputs, targets)`` with the official key
    names (``pred_logits``, ``pred_boxes``; ``boxes_padded``, ``num_boxes``).

    mmdet use: ``assign(pred_instances, gt_instances)`` for one prompt with
    ``pred_instances.scores`` (logits, (Q,) or (Q, 1)), ``pred_instances.bboxes`` and
    ``gt_instances.bboxes`` (normalised cxcywh) -> :class:`AssignResult` (``gt_inds`` 1-based,
    0 = background; ``labels`` 0 for matched queries, -1 otherwise).
    """

    def __init__(self,
                 cost_class: float = 2.0,
                 cost_bbox: float = 5.0,
                 cost_giou: float = 2.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 nonfinite_cost: float = 1e6) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError('at least one matching cost must be non-zero')
        self.bbox_cost = CxcywhBoxL1Cost(weight=cost_bbox)
        self.cls_cost = BinaryFocalLogitCost(weight=cost_class, alpha=alpha, gamma=gamma)
        self.giou_cost = CxcywhGIoUCost(weight=cost_giou)
        self.nonfinite_cost = float(nonfinite_cost)
        self.num_nonfinite_costs = 0
        self.last_num_nonfinite_costs = 0

    def cost_matrix(self, pred_logits: Tensor, pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """(B, Q) logits, (B, Q, 4) and (B, N, 4) cxcywh boxes -> raw cost (B, Q, N)."""
        # Summation order follows the official matcher (bbox, class, giou) so that the float32
        # matrix, and therefore scipy's tie-breaking, is identical.
        return (self.bbox_cost.batched(pred_boxes, gt_boxes)
                + self.cls_cost.batched(pred_logits, gt_boxes.shape[1])
                + self.giou_cost.batched(pred_boxes, gt_boxes))

    @torch.no_grad()
    def match(self, pred_logits: Tensor, pred_boxes: Tensor, gt_boxes_padded: Tensor,
              num_gts: Tensor) -> MatchIndices:
        """Match every prompt of the batch; see the class doc for shapes.

        Within each prompt the pairs are ordered by target index. When Q < N only Q targets
        are matched (scipy's rectangular assignment).
        """
        device = pred_boxes.device
        num_prompts, num_queries = pred_boxes.shape[:2]
        logits = pred_logits.detach().float().reshape(num_prompts, num_queries)
        boxes = pred_boxes.detach().float()
        num_gts = torch.as_tensor(num_gts).to(device=device, dtype=torch.long).reshape(-1)
        keep = num_gts > 0
        if not bool(keep.any()):
            return empty_match_indices(device)
        kept = keep.nonzero().squeeze(1)
        cost = self.cost_matrix(logits[kept], boxes[kept], gt_boxes_padded[kept].float())
        cost = sanitize_costs(cost, self.nonfinite_cost, self, 'matching cost')
        cost = cost.cpu().numpy()
        kept_list = kept.tolist()
        counts = num_gts[kept].tolist()
        offsets = _packed_offsets(num_gts)[kept].tolist()
        batch_idx, src_idx, tgt_idx = [], [], []
        for i, (b, n, off) in enumerate(zip(kept_list, counts, offsets)):
            rows, cols = linear_sum_assignment(cost[i, :, :n])
            order = np.argsort(cols, kind='stable')
            batch_idx.append(np.full(len(rows), b, dtype=np.int64))
            src_idx.append(rows[order].astype(np.int64))
            tgt_idx.append(cols[order].astype(np.int64) + off)
        return MatchIndices(*(torch.from_numpy(np.concatenate(x)).to(device)
                              for x in (batch_idx, src_idx, tgt_idx)))

    def __call__(self, outputs: dict, targets: dict) -> MatchIndices:
        return self.match(outputs['pred_logits'], outputs['pred_boxes'],
                          targets['boxes_padded'], targets['num_boxes'])

    def assign(self, pred_instances: InstanceData, gt_instances: InstanceData,
               img_meta: Optional[dict] = None, **kwargs) -> AssignResult:
        gt_boxes = gt_instances.bboxes
        num_gts, num_preds = len(gt_boxes), len(pred_instances.bboxes)
        device = pred_instances.bboxes.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds, ), -1, dtype=torch.long, device=device)
        if num_gts > 0:
            _, src, tgt = self.match(
                pred_instances.scores.reshape(1, num_preds), pred_instances.bboxes[None],
                gt_boxes[None], torch.tensor([num_gts], device=device))
            gt_inds[src] = tgt + 1
            labels[src] = 0
        return AssignResult(num_gts=num_gts, gt_inds=gt_inds, max_overlaps=None, labels=labels)
