"""SAMInteractiveLoss: the loss of one round of SAM's interactive training.

For ``B`` objects, each with ``M`` candidate masks (SAM 3: output 0 = single-mask token,
1..3 = multimask tokens) of which ``valid`` says which ones the round uses:

- per candidate, a sigmoid focal loss (alpha 0.25, gamma 2, mean over pixels) and a dice loss
  against the object's ground-truth mask (logits bilinearly resized to the mask's size, as
  SAM 2; or, with ``low_res_targets=True``, the mask area-averaged down to the logits' size,
  a soft target: the terms then cost (H W) / (h w) times less, 12x for 168 -> 48);
- the mask terms are back-propagated on the best valid candidate only (and on output 0 as
  well for the objects in ``also_train_first``),
  ``argmin(focal_weight * focal + dice_weight * dice)`` (SAM's multimask loss);
- the IoU head regresses the true IoU (``(logits > 0)`` vs the mask, no gradient through the
  target), L1 (SAM 2) or MSE (SAM 1), averaged over *every* candidate by default (SAM 2's
  ``supervise_all_iou``): the predictor and the single-mask stability fallback rank candidates
  by it, including the ones a round does not train (``supervise_all_iou=False``: the valid
  ones only);
- the object-score head gets a BCE on "the object is present" (mask not empty); the mask,
  dice and IoU terms of absent objects are zero.

Every term is summed over objects and divided by ``B`` (SAM 2's ``num_objects``); weights are
SAM's focal : dice : IoU : object = 20 : 1 : 1 : 1.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['SAMInteractiveLoss']


@MODELS.register_module()
class SAMInteractiveLoss(nn.Module):
    """Args:
        focal_weight (float): weight of the focal term (20).
        dice_weight (float): weight of the dice term (1).
        iou_weight (float): weight of the IoU-prediction term (1).
        object_weight (float): weight of the object-score BCE (1).
        focal_alpha (float): focal loss alpha (0.25); a negative value disables weighting.
        focal_gamma (float): focal loss gamma (2).
        iou_loss (str): ``'l1'`` (SAM 2) or ``'mse'`` (SAM 1).
        supervise_all_iou (bool): the IoU term on every candidate (True) or on the valid
            ones only.
        low_res_targets (bool): compute every term at the logits' resolution against the
            ground-truth masks area-averaged down to it (fractions in [0, 1]; the true IoU of
            the IoU term counts a target pixel as inside from 0.5), instead of upsampling the
            logits to the masks' size (False, SAM 2). The low-resolution logits are what the
            next round and the predictor's upsampling start from, so this trains the same
            quantity at a fraction of the cost; mask boundaries are learnt to a low-res
            pixel.
    """

    def __init__(self,
                 focal_weight: float = 20.0,
                 dice_weight: float = 1.0,
                 iou_weight: float = 1.0,
                 object_weight: float = 1.0,
                 focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0,
                 iou_loss: str = 'l1',
                 supervise_all_iou: bool = True,
                 low_res_targets: bool = False) -> None:
        super().__init__()
        if iou_loss not in ('l1', 'mse'):
            raise ValueError(f"iou_loss must be 'l1' or 'mse', got {iou_loss!r}")
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.iou_weight = iou_weight
        self.object_weight = object_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.iou_loss = iou_loss
        self.supervise_all_iou = supervise_all_iou
        self.low_res_targets = low_res_targets

    def focal(self, logits: Tensor, target: Tensor) -> Tensor:
        """Sigmoid focal loss, mean over the last two dims: ``(B, M, H, W)`` -> ``(B, M)``."""
        prob = logits.sigmoid()
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction='none')
        p_t = prob * target + (1 - prob) * (1 - target)
        loss = ce * (1 - p_t) ** self.focal_gamma
        if self.focal_alpha >= 0:
            loss = loss * (self.focal_alpha * target + (1 - self.focal_alpha) * (1 - target))
        return loss.flatten(2).mean(-1)

    @staticmethod
    def dice(logits: Tensor, target: Tensor) -> Tensor:
        """``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` per candidate: ``(B, M)``."""
        prob = logits.sigmoid().flatten(2)
        target = target.flatten(2)
        num = 2 * (prob * target).sum(-1)
        den = prob.sum(-1) + target.sum(-1)
        return 1 - (num + 1) / (den + 1)

    def forward(self,
                mask_logits: Tensor,
                iou_pred: Tensor,
                object_score_logits: Tensor,
                gt_masks: Tensor,
                valid: Optional[Tensor] = None,
                also_train_first: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Args:
            mask_logits (Tensor): ``(B, M, h, w)`` candidate mask logits (any resolution).
            iou_pred (Tensor): ``(B, M)`` predicted IoUs.
            object_score_logits (Tensor): ``(B, 1)`` object-presence logits.
            gt_masks (Tensor): ``(B, H, W)`` ground-truth masks (bool or 0 / 1).
            valid (Tensor, optional): ``(B, M)`` bool, the candidates this round uses (at least
                one per object); default all.
            also_train_first (Tensor, optional): ``(B,)`` bool, objects whose output 0 (the
                single-mask output) gets the mask terms as well, besides the best valid
                candidate (``SAM3Interactive(point_trains_single_mask=True)``).

        Returns:
            dict: ``loss_mask`` (focal), ``loss_dice``, ``loss_iou``, ``loss_obj``, weighted,
            and ``best_index`` (``(B,)``, not a loss: the candidate the mask terms used).
        """
        if mask_logits.dim() != 4 or iou_pred.shape != mask_logits.shape[:2]:
            raise ValueError(f'mask_logits must be (B, M, h, w) and iou_pred (B, M); got '
                             f'{tuple(mask_logits.shape)} and {tuple(iou_pred.shape)}')
        num, num_out = mask_logits.shape[:2]
        if gt_masks.dim() != 3 or gt_masks.shape[0] != num:
            raise ValueError(f'gt_masks must be (B={num}, H, W), got {tuple(gt_masks.shape)}')
        if object_score_logits.shape != (num, 1):
            raise ValueError(f'object_score_logits must be ({num}, 1), got '
                             f'{tuple(object_score_logits.shape)}')
        if valid is None:
            valid = torch.ones(num, num_out, dtype=torch.bool, device=mask_logits.device)
        if valid.shape != (num, num_out) or not bool(valid.any(1).all()):
            raise ValueError(f'valid must be a ({num}, {num_out}) bool tensor with at least one '
                             'candidate per object')
        target = gt_masks.to(mask_logits.dtype)[:, None]
        if tuple(mask_logits.shape[-2:]) != tuple(target.shape[-2:]):
            if self.low_res_targets:
                target = F.adaptive_avg_pool2d(target, mask_logits.shape[-2:])
            else:
                mask_logits = F.interpolate(mask_logits, size=target.shape[-2:],
                                            mode='bilinear', align_corners=False)
        target = target.expand_as(mask_logits)
        focal = self.focal(mask_logits, target)
        dice = self.dice(mask_logits, target)
        combo = (self.focal_weight * focal + self.dice_weight * dice).detach()
        best = combo.masked_fill(~valid, float('inf')).argmin(1)
        rows = torch.arange(num, device=best.device)
        present = target[:, 0].flatten(1).gt(0).any(1).to(mask_logits.dtype)

        with torch.no_grad():
            pred = mask_logits > 0
            tgt = target > 0.5
            inter = (pred & tgt).flatten(2).sum(-1).float()
            union = (pred | tgt).flatten(2).sum(-1).float()
            true_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        err = (iou_pred.float() - true_iou)
        err = err.abs() if self.iou_loss == 'l1' else err ** 2
        if self.supervise_all_iou:
            iou_term = err.mean(1)
        else:
            validf = valid.to(err.dtype)
            iou_term = (err * validf).sum(1) / validf.sum(1)

        obj = F.binary_cross_entropy_with_logits(object_score_logits[:, 0].float(),
                                                 present.float(), reduction='none')
        focal_used, dice_used = focal[rows, best], dice[rows, best]
        if also_train_first is not None:
            if also_train_first.shape != (num, ):
                raise ValueError(f'also_train_first must be ({num},) bool, got '
                                 f'{tuple(also_train_first.shape)}')
            extra = also_train_first.to(focal.dtype)
            focal_used = focal_used + focal[:, 0] * extra
            dice_used = dice_used + dice[:, 0] * extra
        return dict(
            loss_mask=self.focal_weight * (focal_used * present).sum() / num,
            loss_dice=self.dice_weight * (dice_used * present).sum() / num,
            loss_iou=self.iou_weight * (iou_term * present).sum() / num,
            loss_obj=self.object_weight * obj.sum() / num,
            best_index=best)
