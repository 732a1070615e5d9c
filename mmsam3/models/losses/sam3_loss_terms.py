"""The individual loss terms of SAM 3 training (official ``IABCEMdetr``, ``Boxes``, ``Masks``).

Every term takes the outputs of ONE decoder layer (final, auxiliary or o2m half), the packed
targets (see :func:`mmsam3.models.losses.sam3_criterion.pack_sam3_targets`), the matches
:class:`~mmsam3.models.task_modules.assigners.MatchIndices` and the box-count normaliser
``num_boxes`` (a float tensor), and returns a dict of losses **already multiplied by their
loss weights** (mmdet convention). Shapes: B prompts, Q queries, M matches, T packed targets.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from torch import Tensor


def sigmoid_focal_loss_elementwise(logits: Tensor, targets: Tensor, alpha: float,
                                   gamma: float) -> Tensor:
    """RetinaNet focal loss per element (no reduction).

    ``alpha_t * BCE(x, t) * (1 - p_t)^gamma`` with ``p_t = p t + (1 - p)(1 - t)`` and
    ``alpha_t = alpha t + (1 - alpha)(1 - t)``; ``alpha < 0`` disables the alpha weighting.
    """
    prob = logits.sigmoid()
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = loss * (1 - p_t)**gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss_per_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` per row of (M, P) logits / targets."""
    prob = logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def pred_boxes_xyxy(outputs: dict, suffix: str = '') -> Tensor:
    """``pred_boxes_xyxy`` of an output dict, derived from ``pred_boxes`` when absent."""
    key = f'pred_boxes_xyxy{suffix}'
    if key in outputs and outputs[key] is not None:
        return outputs[key]
    return bbox_cxcywh_to_xyxy(outputs[f'pred_boxes{suffix}'])


@MODELS.register_module()
class SAM3IABCELoss(nn.Module):
    """IoU-aware BCE classification loss and presence loss (official ``IABCEMdetr``).

    With ``p = sigmoid(logit)`` per query:

    * matched queries: ``pos_weight * BCE(logit, t)`` with the soft target
      ``t = clamp(p^alpha * IoU(pred, gt)^(1 - alpha), min=0.01)`` (detached);
    * unmatched queries: ``BCE(logit, 0) * p^gamma``;
    * with ``use_presence``, prompts with no visible target (negative prompts) get **zero**
      classification loss (they still count in the mean) and the presence logit is trained
      with ``focal(presence_logit, has_target, presence_alpha, presence_gamma)`` averaged
      over prompts;
    * reduction: mean over B x Q; when Q < ``pad_n_queries`` the sum is divided by
      ``B * pad_n_queries`` instead (and positives are scaled by ``pad_scale_pos``).

    When a query is matched to several targets (o2m) the soft target of its last pair in
    (prompt, query, target) order is used, which is what the official in-place indexing gives
    on CPU; here it is made deterministic on every device.

    Args (official RF100-VL values as defaults; ODinW uses ``pos_weight=5.0``):
        pos_weight (float): 10.0.
        alpha (float): IoU-aware target exponent, 0.25.
        gamma (float): Negative down-weighting exponent, 2.
        pad_n_queries (int | None): 200.
        pad_scale_pos (float): 1.0.
        use_presence (bool): True.
        presence_alpha (float): 0.5.
        presence_gamma (float): 0.0.
        loss_weight (float): Weight of ``loss_cls`` (official ``loss_ce``), 20.0.
        presence_loss_weight (float): Weight of ``loss_presence``, 20.0.

    ``forward(logits (B, Q), boxes_xyxy (B, Q, 4), gt_boxes_xyxy (T, 4), indices,
    has_target (B,) bool, presence_logits (B, 1) | None)`` ->
    ``{'loss_cls'[, 'loss_presence']}`` (presence only when ``presence_logits`` is given).
    """

    def __init__(self,
                 pos_weight: float = 10.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 pad_n_queries: Optional[int] = 200,
                 pad_scale_pos: float = 1.0,
                 use_presence: bool = True,
                 presence_alpha: float = 0.5,
                 presence_gamma: float = 0.0,
                 loss_weight: float = 20.0,
                 presence_loss_weight: float = 20.0) -> None:
        super().__init__()
        if pad_scale_pos != 1.0 and pad_n_queries is None:
            raise ValueError('pad_scale_pos needs pad_n_queries')
        self.pos_weight = pos_weight
        self.alpha = alpha
        self.gamma = gamma
        self.pad_n_queries = pad_n_queries
        self.pad_scale_pos = pad_scale_pos
        self.use_presence = use_presence
        self.presence_alpha = presence_alpha
        self.presence_gamma = presence_gamma
        self.loss_weight = loss_weight
        self.presence_loss_weight = presence_loss_weight

    def forward(self, logits: Tensor, boxes_xyxy: Tensor, gt_boxes_xyxy: Tensor, indices,
                has_target: Tensor, presence_logits: Optional[Tensor] = None
                ) -> Dict[str, Tensor]:
        batch_idx, src_idx, tgt_idx = indices
        num_prompts, num_queries = logits.shape
        prob = logits.sigmoid()
        with torch.no_grad():
            is_pos = torch.zeros_like(logits)
            is_pos[batch_idx, src_idx] = 1
            soft = is_pos.clone()
            if batch_idx.numel():
                iou = bbox_overlaps(boxes_xyxy[batch_idx, src_idx].detach(),
                                    gt_boxes_xyxy[tgt_idx], mode='iou', is_aligned=True)
                t = prob[batch_idx, src_idx]**self.alpha * iou**(1 - self.alpha)
                t = t.clamp(min=0.01)
                # keep one pair per query: the last in (prompt, query, target) order
                flat = batch_idx * num_queries + src_idx
                key = flat * (int(tgt_idx.max()) + 1) + tgt_idx
                key, order = torch.sort(key)
                flat, t = flat[order], t[order]
                last = torch.ones_like(flat, dtype=torch.bool)
                last[:-1] = flat[1:] != flat[:-1]
                soft.view(-1)[flat[last]] = t[last]

        loss = F.binary_cross_entropy_with_logits(logits, soft, reduction='none')
        loss = loss * is_pos * self.pos_weight
        padded = self.pad_n_queries is not None and num_queries < self.pad_n_queries
        if padded:
            loss = loss * self.pad_scale_pos
        loss = loss + F.binary_cross_entropy_with_logits(
            logits, is_pos, reduction='none') * (1 - is_pos) * prob**self.gamma

        losses = {}
        if self.use_presence:
            keep = has_target.to(loss.dtype).reshape(num_prompts, 1)
            loss = loss * keep
            if presence_logits is not None:
                presence = presence_logits.float().reshape(num_prompts, 1)
                loss_presence = sigmoid_focal_loss_elementwise(
                    presence, keep, self.presence_alpha, self.presence_gamma).sum() / num_prompts
                losses['loss_presence'] = self.presence_loss_weight * loss_presence
        if padded:
            loss_cls = loss.sum() / (self.pad_n_queries * num_prompts)
        else:
            loss_cls = loss.mean()
        losses['loss_cls'] = self.loss_weight * loss_cls
        return losses


@MODELS.register_module()
class SAM3BoxLoss(nn.Module):
    """L1 and GIoU losses on matched pairs (official ``Boxes``), summed and divided by
    ``num_boxes``.

    Args (official values as defaults):
        loss_bbox_weight (float): 5.0 (L1 on normalised cxcywh).
        loss_giou_weight (float): 2.0 (``1 - GIoU`` on xyxy).

    ``forward(boxes (B, Q, 4) cxcywh, boxes_xyxy (B, Q, 4), gt_boxes (T, 4) cxcywh,
    gt_boxes_xyxy (T, 4), indices, num_boxes)`` -> ``{'loss_bbox', 'loss_giou'}``.
    """

    def __init__(self, loss_bbox_weight: float = 5.0, loss_giou_weight: float = 2.0) -> None:
        super().__init__()
        self.loss_bbox_weight = loss_bbox_weight
        self.loss_giou_weight = loss_giou_weight

    def forward(self, boxes: Tensor, boxes_xyxy: Tensor, gt_boxes: Tensor,
                gt_boxes_xyxy: Tensor, indices, num_boxes: Tensor) -> Dict[str, Tensor]:
        batch_idx, src_idx, tgt_idx = indices
        loss_bbox = F.l1_loss(boxes[batch_idx, src_idx], gt_boxes[tgt_idx], reduction='none')
        giou = bbox_overlaps(boxes_xyxy[batch_idx, src_idx], gt_boxes_xyxy[tgt_idx],
                             mode='giou', is_aligned=True)
        return dict(
            loss_bbox=self.loss_bbox_weight * (loss_bbox.sum() / num_boxes),
            loss_giou=self.loss_giou_weight * ((1 - giou).sum() / num_boxes))


@MODELS.register_module()
class SAM3MaskLoss(nn.Module):
    """Sigmoid focal and dice losses on matched masks (official ``Masks``, RF100 seg variant).

    The matched mask logits (h, w) are bilinearly upsampled (``align_corners=False``) to the
    target mask size (H, W) — no point sampling, as in the official configs — and targets whose
    mask is invalid are dropped. ``loss_mask`` = sum over masks of the per-pixel mean focal loss
    / ``num_boxes``; ``loss_dice`` = sum of per-mask dice losses / ``num_boxes``. Not applied to
    auxiliary layers (official ``compute_aux=False``).

    Args (official values as defaults):
        focal_alpha (float): 0.25.
        focal_gamma (float): 2.0.
        loss_mask_weight (float): 200.0.
        loss_dice_weight (float): 10.0.

    ``forward(pred_masks (B, Q, h, w), gt_masks (T, H, W) | None, gt_mask_valid (T,) bool,
    indices, num_boxes)`` -> ``{'loss_mask', 'loss_dice'}`` (zeros, still attached to the graph,
    when the targets have no masks).
    """

    def __init__(self, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 loss_mask_weight: float = 200.0, loss_dice_weight: float = 10.0) -> None:
        super().__init__()
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.loss_mask_weight = loss_mask_weight
        self.loss_dice_weight = loss_dice_weight

    def forward(self, pred_masks: Tensor, gt_masks: Optional[Tensor],
                gt_mask_valid: Optional[Tensor], indices, num_boxes: Tensor
                ) -> Dict[str, Tensor]:
        batch_idx, src_idx, tgt_idx = indices
        if gt_masks is None:
            zero = pred_masks.sum() * 0.0
            return dict(loss_mask=zero, loss_dice=zero.clone())
        src = pred_masks[batch_idx, src_idx]
        tgt = gt_masks[tgt_idx].to(src.dtype if src.is_floating_point() else torch.float32)
        if gt_mask_valid is not None:
            keep = gt_mask_valid[tgt_idx].bool()
            src, tgt = src[keep], tgt[keep]
        if src.shape[0] == 0:
            zero = src.sum() * 0.0
            return dict(loss_mask=zero, loss_dice=zero.clone())
        # bilinear interpolation is not implemented for bf16 on every device
        src = F.interpolate(src[:, None].float(), size=tgt.shape[-2:], mode='bilinear',
                            align_corners=False)[:, 0].flatten(1)
        tgt = tgt.float().flatten(1)
        focal = sigmoid_focal_loss_elementwise(src, tgt, self.focal_alpha, self.focal_gamma)
        loss_mask = focal.sum() / (num_boxes * src.shape[1])
        loss_dice = dice_loss_per_mask(src, tgt).sum() / num_boxes
        return dict(loss_mask=self.loss_mask_weight * loss_mask,
                    loss_dice=self.loss_dice_weight * loss_dice)
