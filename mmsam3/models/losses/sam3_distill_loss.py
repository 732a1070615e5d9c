"""Distillation losses of a SAM 3 student against its teacher (see :class:`SAM3Distiller`).

Terms (each weighted, all means, every teacher tensor detached):

* features: on each neck level, MSE normalised by the teacher's mean square (scale-free) plus
  ``1 - cos`` over channels; the teacher level is resized to the student's when they differ;
* logits and presence: BCE of the student's logits against the teacher's probabilities;
* boxes: L1 + GIoU to the matched teacher query, weighted by the teacher's score
  ``sigmoid(logit) * sigmoid(presence)`` (background queries barely count);
* masks: BCE + dice to the teacher's mask probabilities on the ``mask_topk`` best teacher-scored
  pairs of each prompt, weighted the same way.

Inputs are the heads' raw outputs (``logits (L, B, Q, 1)``, ``boxes (L, B, Q, 4)``, ``presence
(L, B, 1)``, ``pred_masks (B, Q, h, w)``), final decoder layer only, and a matching given as
``(prompt, student query, teacher query)`` index triples.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from torch import Tensor, nn

from .sam3_loss_terms import dice_loss_per_mask

__all__ = ['SAM3DistillLoss']


@MODELS.register_module()
class SAM3DistillLoss(nn.Module):
    """Weighted feature and decoder-output distillation terms.

    Args:
        feat_mse_weight, feat_cos_weight (float): neck-feature terms.
        logit_weight, presence_weight (float): soft-target BCE terms.
        box_l1_weight, box_giou_weight (float): box terms (official 5 / 2 ratio).
        mask_bce_weight, mask_dice_weight (float): mask terms.
        mask_topk (int): matched pairs per prompt that get mask terms (by teacher score).
    """

    def __init__(self,
                 feat_mse_weight: float = 1.0,
                 feat_cos_weight: float = 1.0,
                 logit_weight: float = 2.0,
                 presence_weight: float = 1.0,
                 box_l1_weight: float = 5.0,
                 box_giou_weight: float = 2.0,
                 mask_bce_weight: float = 1.0,
                 mask_dice_weight: float = 1.0,
                 mask_topk: int = 16):
        super().__init__()
        self.feat_mse_weight = feat_mse_weight
        self.feat_cos_weight = feat_cos_weight
        self.logit_weight = logit_weight
        self.presence_weight = presence_weight
        self.box_l1_weight = box_l1_weight
        self.box_giou_weight = box_giou_weight
        self.mask_bce_weight = mask_bce_weight
        self.mask_dice_weight = mask_dice_weight
        self.mask_topk = mask_topk

    def feature_losses(self, s_feats: Sequence[Tensor],
                       t_feats: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Neck levels ``(B, C, H_i, W_i)`` (student) vs the teacher's (any ``H, W``)."""
        if len(s_feats) != len(t_feats):
            raise ValueError(f'student has {len(s_feats)} neck levels, the teacher '
                             f'{len(t_feats)}')
        mse, cos = 0., 0.
        for s, t in zip(s_feats, t_feats):
            if s.shape[1] != t.shape[1]:
                raise ValueError(f'neck channels differ (student {s.shape[1]}, teacher '
                                 f'{t.shape[1]}): feature distillation needs equal d_model')
            t = t.detach().float()
            s = s.float()
            if t.shape[-2:] != s.shape[-2:]:
                t = F.interpolate(t, size=s.shape[-2:], mode='bilinear', align_corners=False)
            mse = mse + F.mse_loss(s, t) / t.pow(2).mean().clamp_min(1e-6)
            cos = cos + (1 - F.cosine_similarity(s, t, dim=1)).mean()
        n = len(s_feats)
        return dict(loss_kd_feat_mse=self.feat_mse_weight * mse / n,
                    loss_kd_feat_cos=self.feat_cos_weight * cos / n)

    def output_losses(self, s_out: Dict[str, Tensor], t_out: Dict[str, Tensor],
                      match: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Decoder-output terms for matched ``(prompt, student query, teacher query)``."""
        b_idx, s_idx, t_idx = match
        s_logit = s_out['logits'][-1, :, :, 0].float()  # (B, Qs)
        t_logit = t_out['logits'][-1, :, :, 0].detach().float()  # (B, Qt)
        t_prob = t_logit.sigmoid()
        t_score = t_prob
        losses = {}
        if s_out.get('presence') is not None and t_out.get('presence') is not None:
            t_pres = t_out['presence'][-1].detach().float()
            t_score = t_prob * t_pres.sigmoid()
            losses['loss_kd_presence'] = self.presence_weight * F.binary_cross_entropy_with_logits(
                s_out['presence'][-1].float(), t_pres.sigmoid())
        losses['loss_kd_logits'] = self.logit_weight * F.binary_cross_entropy_with_logits(
            s_logit[b_idx, s_idx], t_prob[b_idx, t_idx])
        weight = t_score[b_idx, t_idx]
        norm = weight.sum().clamp_min(1e-6)
        s_box = s_out['boxes'][-1, b_idx, s_idx].float()
        t_box = t_out['boxes'][-1, b_idx, t_idx].detach().float()
        l1 = (s_box - t_box).abs().sum(-1)
        giou = bbox_overlaps(bbox_cxcywh_to_xyxy(s_box), bbox_cxcywh_to_xyxy(t_box),
                             mode='giou', is_aligned=True)
        losses['loss_kd_bbox'] = self.box_l1_weight * (weight * l1).sum() / norm
        losses['loss_kd_giou'] = self.box_giou_weight * (weight * (1 - giou)).sum() / norm
        if 'pred_masks' in s_out and 'pred_masks' in t_out and self.mask_topk > 0:
            losses.update(self._mask_losses(s_out['pred_masks'], t_out['pred_masks'], b_idx,
                                            s_idx, t_idx, weight))
        return losses

    def _mask_losses(self, s_masks, t_masks, b_idx, s_idx, t_idx, weight):
        keep = []
        for b in b_idx.unique():
            rows = (b_idx == b).nonzero().flatten()
            keep.append(rows[weight[rows].argsort(descending=True)[:self.mask_topk]])
        keep = torch.cat(keep)
        s = s_masks[b_idx[keep], s_idx[keep]].float()  # (M, h, w)
        t = t_masks[b_idx[keep], t_idx[keep]].detach().float()
        if t.shape[-2:] != s.shape[-2:]:
            t = F.interpolate(t[None], size=s.shape[-2:], mode='bilinear',
                              align_corners=False)[0]
        t = t.sigmoid()
        w = weight[keep]
        norm = w.sum().clamp_min(1e-6)
        bce = F.binary_cross_entropy_with_logits(s, t, reduction='none').flatten(1).mean(1)
        dice = dice_loss_per_mask(s.flatten(1), t.flatten(1))
        return dict(loss_kd_mask_bce=self.mask_bce_weight * (w * bce).sum() / norm,
                    loss_kd_mask_dice=self.mask_dice_weight * (w * dice).sum() / norm)
