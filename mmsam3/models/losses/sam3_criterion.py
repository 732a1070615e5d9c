"""SAM 3 training criterion: matching + all loss terms of the official ``Sam3LossWrapper``.

Inputs
------
``outputs`` (dict, official key names, B prompts, Q object queries per half):

* ``pred_logits`` (B, Q, 1), ``pred_boxes`` (B, Q, 4) normalised cxcywh, optional
  ``pred_boxes_xyxy`` (B, Q, 4) (derived from ``pred_boxes`` when absent);
* ``presence_logit_dec`` (B, 1) (optional);
* ``pred_masks`` (B, Q, h, w) mask logits (optional; final layer only);
* ``pred_logits_o2m``, ``pred_boxes_o2m``, ``pred_boxes_xyxy_o2m``, ``pred_masks_o2m``:
  the DAC one-to-many query half (optional);
* ``aux_outputs``: list (one per earlier decoder layer, first layer first) of dicts with the
  same box/logit/presence/o2m keys (no masks);
* ``indices`` (optional, in the final and each aux dict): precomputed o2o matches
  ``(batch_idx, src_idx, tgt_idx)``; ``tgt_idx=None`` means "every target in packed order"
  (official convention). When absent the criterion runs its o2o matcher.

``targets``: either

* a list of B :class:`~mmengine.structures.InstanceData` (or dicts), one per prompt, with
  ``bboxes`` (N_b, 4) **normalised cxcywh** in [0, 1] (N_b = 0 for a negative prompt),
  optional ``masks`` (N_b, H, W) bool/float tensor (or an object with ``to_tensor``, e.g.
  mmdet ``BitmapMasks``) at the network-input resolution, optional ``mask_valid`` (N_b,) bool
  (default all True); or
* the packed dict produced by :func:`pack_sam3_targets` (official ``back_convert`` layout):
  ``boxes`` (T, 4) cxcywh, ``num_boxes`` (B,) long, optional ``boxes_xyxy`` (T, 4),
  ``boxes_padded`` (B, max N_b, 4), ``masks`` (T, H, W) | None, ``is_valid_mask`` (T,) | None.

Output
------
A flat dict of **weighted** scalar losses whose sum is the official ``core_loss``:

* final layer: ``loss_cls``, ``loss_presence``, ``loss_bbox``, ``loss_giou`` (+ ``loss_mask``,
  ``loss_dice`` when masks are predicted);
* auxiliary layer i: the same box/cls/presence keys prefixed by ``d{i}.``;
* o2m half: ``<key>_o2m`` (``loss_cls_o2m``, ``loss_bbox_o2m``, ``loss_giou_o2m``,
  ``loss_mask_o2m``, ``loss_dice_o2m``, ``d{i}.loss_cls_o2m``, ...), already multiplied by
  ``o2m_weight``; the o2m half has no presence logit, so no presence term.

Official-value mapping: ``loss_cls`` = 20 * ``loss_ce``; ``loss_presence`` = 20 *
``presence_loss``; ``loss_bbox`` = 5 * ``loss_bbox``; ``loss_giou`` = 2 * ``loss_giou``;
``loss_mask`` = 200 * ``loss_mask``; ``loss_dice`` = 10 * ``loss_dice``; aux suffix
``_aux_{i}`` -> prefix ``d{i}.``; every term is also multiplied by sqrt(B) when
``scale_by_find_batch_size`` (the official code scales only the summed ``core_loss``; scaling
each term keeps the sum identical).

Matching: o2o Hungarian matcher on the final and every aux layer; the o2m matcher on the final
o2m half; the Hungarian matcher on aux o2m halves (``use_o2m_matcher_on_o2m_aux=False``).

Normalisation (``normalization='global'``): ``num_boxes`` = total number of targets of the
batch, averaged over ranks with mmengine's ``all_reduce`` only when running distributed (a
plain single process needs no ``torch.distributed``), floored at 1.
"""
import math
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine import dist
from torch import Tensor

from .sam3_loss_terms import pred_boxes_xyxy

O2M_SUFFIX = '_o2m'


def _as_tensor_masks(masks) -> Tensor:
    if hasattr(masks, 'to_tensor') and not isinstance(masks, Tensor):
        return masks.to_tensor(dtype=torch.bool, device='cpu')
    return masks


def pack_sam3_targets(targets: Union[Sequence, dict], device=None) -> dict:
    """Per-prompt targets -> the packed dict used by matchers and losses (see module doc).

    Returns ``boxes`` (T, 4), ``boxes_xyxy`` (T, 4), ``boxes_padded`` (B, max_b N_b, 4)
    zero-padded (B, 0, 4 when all prompts are negative), ``num_boxes`` (B,) long,
    ``masks`` (T, H, W) | None, ``is_valid_mask`` (T,) bool | None and ``has_target`` (B,)
    bool (a prompt has at least one target box with positive width and height).
    """
    if isinstance(targets, dict):
        packed = dict(targets)
        boxes = packed['boxes'].reshape(-1, 4)
        if device is None:
            device = boxes.device
        num_boxes = torch.as_tensor(packed['num_boxes'], device=device).long().reshape(-1)
        boxes = boxes.to(device)
        masks = packed.get('masks')
        valid = packed.get('is_valid_mask')
        padded = packed.get('boxes_padded')
    else:
        targets = list(targets)
        box_list = [torch.as_tensor(t['bboxes'] if isinstance(t, dict) else t.bboxes)
                    .reshape(-1, 4) for t in targets]
        if device is None:
            device = box_list[0].device if box_list else torch.device('cpu')
        boxes = (torch.cat(box_list).to(device=device, dtype=torch.float32)
                 if box_list else torch.zeros(0, 4, device=device))
        num_boxes = torch.tensor([len(b) for b in box_list], dtype=torch.long, device=device)

        def field(t, name):
            return t.get(name) if isinstance(t, dict) else getattr(t, name, None)

        mask_list = [field(t, 'masks') for t in targets]
        masks = valid = None
        if any(m is not None for m in mask_list):
            mask_list = [None if m is None else _as_tensor_masks(m) for m in mask_list]
            hw = next(m.shape[-2:] for m in mask_list if m is not None)
            parts, valid_parts = [], []
            for t, m, n in zip(targets, mask_list, num_boxes.tolist()):
                if m is None:
                    if n:
                        raise ValueError('either every prompt with targets has masks or none')
                    m = torch.zeros((0, *hw), dtype=torch.bool)
                parts.append(m.to(device))
                v = field(t, 'mask_valid')
                valid_parts.append(torch.ones(n, dtype=torch.bool, device=device)
                                   if v is None else torch.as_tensor(v).bool().to(device))
            masks = torch.cat(parts)
            valid = torch.cat(valid_parts)
        padded = None
    if padded is None:
        max_n = int(num_boxes.max()) if num_boxes.numel() else 0
        padded = boxes.new_zeros(len(num_boxes), max_n, 4)
        is_real = torch.arange(max_n, device=device)[None] < num_boxes[:, None]
        padded[is_real] = boxes
    padded = padded.to(device)
    is_real = torch.arange(padded.shape[1], device=device)[None] < num_boxes[:, None]
    visible = is_real & (padded[..., 2] > 0) & (padded[..., 3] > 0)
    return dict(
        boxes=boxes,
        boxes_xyxy=bbox_cxcywh_to_xyxy(boxes),
        boxes_padded=padded,
        num_boxes=num_boxes,
        masks=masks,
        is_valid_mask=valid,
        has_target=visible.any(-1))


@MODELS.register_module()
class SAM3Criterion(nn.Module):
    """All training losses of SAM 3 (official ``Sam3LossWrapper`` with the RF100-VL recipe).

    Args (official RF100-VL values as defaults):
        matcher (dict): o2o matcher, ``SAM3HungarianAssigner`` (cost_class 2, cost_bbox 5,
            cost_giou 2, alpha 0.25, gamma 2).
        o2m_matcher (dict): ``SAM3OneToManyAssigner`` (alpha 0.3, threshold 0.4, topk 4).
        cls_loss (dict): ``SAM3IABCELoss`` (pos_weight 10 — 5 for ODinW —, alpha 0.25,
            gamma 2, pad_n_queries 200, use_presence True, weights 20 / 20).
        box_loss (dict): ``SAM3BoxLoss`` (weights 5 / 2).
        mask_loss (dict | None): ``SAM3MaskLoss`` (focal 0.25 / 2, weights 200 / 10), used
            only when the outputs contain ``pred_masks`` (the RF100 box recipe has none).
        o2m_weight (float): Multiplier of every o2m term, 2.0.
        use_o2m_matcher_on_o2m_aux (bool): False (aux o2m halves use the o2o matcher).
        normalization (str): ``'global'`` (average over ranks), ``'local'`` or ``'none'``.
        scale_by_find_batch_size (bool): Multiply every term by sqrt(B), True.
        aux_loss (bool): Supervise ``aux_outputs``, True.

    ``forward(outputs, targets) -> dict[str, Tensor]``; see the module doc for structures.
    """

    def __init__(self,
                 matcher: dict = dict(type='SAM3HungarianAssigner'),
                 o2m_matcher: Optional[dict] = dict(type='SAM3OneToManyAssigner'),
                 cls_loss: dict = dict(type='SAM3IABCELoss'),
                 box_loss: dict = dict(type='SAM3BoxLoss'),
                 mask_loss: Optional[dict] = dict(type='SAM3MaskLoss'),
                 o2m_weight: float = 2.0,
                 use_o2m_matcher_on_o2m_aux: bool = False,
                 normalization: str = 'global',
                 scale_by_find_batch_size: bool = True,
                 aux_loss: bool = True) -> None:
        super().__init__()
        if normalization not in ('global', 'local', 'none'):
            raise ValueError(f'unknown normalization {normalization!r}')
        self.matcher = TASK_UTILS.build(matcher)
        self.o2m_matcher = TASK_UTILS.build(o2m_matcher) if o2m_matcher else None
        self.cls_loss = MODELS.build(cls_loss)
        self.box_loss = MODELS.build(box_loss)
        self.mask_loss = MODELS.build(mask_loss) if mask_loss else None
        self.o2m_weight = o2m_weight
        self.use_o2m_matcher_on_o2m_aux = use_o2m_matcher_on_o2m_aux
        self.normalization = normalization
        self.scale_by_find_batch_size = scale_by_find_batch_size
        self.aux_loss = aux_loss

    # ------------------------------------------------------------------ helpers
    def get_num_boxes(self, num_boxes: Tensor) -> Tensor:
        """Loss normaliser from the per-prompt target counts (B,) of this rank."""
        total = num_boxes.sum().float()
        if self.normalization == 'none':
            return torch.ones_like(total)
        if self.normalization == 'global' and dist.is_distributed():
            total = total.clone()
            dist.all_reduce(total, op='mean')
        return total.clamp(min=1)

    @staticmethod
    def _explicit_indices(indices, num_targets: int, device):
        batch_idx, src_idx, tgt_idx = indices
        if tgt_idx is None:
            tgt_idx = torch.arange(num_targets, device=device)
        return batch_idx.to(device), src_idx.to(device), tgt_idx.to(device)

    def _match(self, matcher, logits, boxes, targets):
        return matcher.match(logits, boxes, targets['boxes_padded'], targets['num_boxes'])

    def _layer_losses(self, out: dict, suffix: str, targets: dict, indices, num_boxes: Tensor,
                      with_masks: bool) -> Dict[str, Tensor]:
        """Box + cls (+ presence, + masks) terms of one output half; keys without prefix."""
        logits = out[f'pred_logits{suffix}'].float()
        boxes = out[f'pred_boxes{suffix}'].float()
        boxes_xyxy = pred_boxes_xyxy(out, suffix).float()
        presence = out.get('presence_logit_dec') if suffix == '' else None
        losses = self.cls_loss(logits.squeeze(-1), boxes_xyxy, targets['boxes_xyxy'], indices,
                               targets['has_target'], presence)
        losses.update(self.box_loss(boxes, boxes_xyxy, targets['boxes'], targets['boxes_xyxy'],
                                    indices, num_boxes))
        if with_masks:
            losses.update(self.mask_loss(out[f'pred_masks{suffix}'], targets['masks'],
                                         targets['is_valid_mask'], indices, num_boxes))
        return losses

    # ------------------------------------------------------------------ forward
    def forward(self, outputs: dict, targets: Union[List, dict]) -> Dict[str, Tensor]:
        device = outputs['pred_logits'].device
        targets = pack_sam3_targets(targets, device=device)
        num_prompts = targets['num_boxes'].shape[0]
        num_boxes = self.get_num_boxes(targets['num_boxes'])
        num_targets = targets['boxes'].shape[0]

        layers = [(outputs, '', False)]
        if self.aux_loss:
            layers += [(aux, f'd{i}.', True)
                       for i, aux in enumerate(outputs.get('aux_outputs') or [])]

        losses = {}
        for out, prefix, is_aux in layers:
            if out.get('indices') is not None:
                indices = self._explicit_indices(out['indices'], num_targets, device)
            else:
                indices = self._match(self.matcher, out['pred_logits'], out['pred_boxes'],
                                      targets)
            with_masks = (not is_aux and self.mask_loss is not None
                          and out.get('pred_masks') is not None)
            for k, v in self._layer_losses(out, '', targets, indices, num_boxes,
                                           with_masks).items():
                losses[prefix + k] = v

            if out.get('pred_logits' + O2M_SUFFIX) is None:
                continue
            use_o2m = self.o2m_matcher is not None and (
                self.use_o2m_matcher_on_o2m_aux or not is_aux)
            o2m_indices = self._match(self.o2m_matcher if use_o2m else self.matcher,
                                      out['pred_logits' + O2M_SUFFIX],
                                      out['pred_boxes' + O2M_SUFFIX], targets)
            with_masks_o2m = (not is_aux and self.mask_loss is not None
                              and out.get('pred_masks' + O2M_SUFFIX) is not None)
            for k, v in self._layer_losses(out, O2M_SUFFIX, targets, o2m_indices, num_boxes,
                                           with_masks_o2m).items():
                losses[prefix + k + O2M_SUFFIX] = self.o2m_weight * v

        if self.scale_by_find_batch_size:
            scale = math.sqrt(num_prompts)
            losses = {k: v * scale for k, v in losses.items()}
        return losses
