"""SAM3Interactive: SAM 3's click / box / mask head trained with SAM's prompt simulation and
evaluated in clicks, as an mmdet detector (``tools/train.py`` / ``tools/test.py``).

It is :class:`SAM3` with the tracker neck and :class:`SAM3InteractiveHead` (the same weights,
so checkpoints move between the two), whose ``loss`` and ``predict`` work on the
ground-truth instance masks of each data sample instead of phrases:

``loss`` (SAM 1 appendix A; SAM 2's ``SAM2Train`` on one frame)::

    inputs -> ViT -> tracker neck -> head.image_feats           (once per image)
    per image: at most max_objects GT masks (InteractivePromptSampler.select_objects)
    round 0: a point uniform in the mask or the noisy box (equal odds); a single point
             trains the 3 multimask outputs (loss on the best), a box the single-mask output
    rounds 1..: a click drawn uniformly from the error region of the previous prediction
             (FN -> positive, FP -> negative) appended to the prompt, the previous chosen
             low-res logits (detached) as mask prompt; ``num_no_click_rounds`` rounds add no
             click (one at a random place, one at the end, as SAM)
    losses (SAMInteractiveLoss) summed over rounds

``predict``: for every GT instance, ``num_clicks`` rounds of the standard click simulator
(:func:`~mmsam3.evaluation.functional.next_click`, on the model-input-size masks), each with
the previous logits as mask prompt (first click multimask, the highest predicted IoU kept);
every data sample gets ``click_ious`` ``(num_objects, num_clicks)`` (float64) for
:class:`~mmsam3.evaluation.metrics.InteractiveClickMetric`, and ``pred_instances`` (the masks
after the last click, ``scores`` = predicted IoU, GT ``labels``, ``bboxes`` of the masks).

Coordinates are model-input pixels: the network input must be the head's ``image_size``
square (resize and pad to it in the pipeline). Frozen towers are the default: only the
tracker neck and the interactive head train (``frozen_modules``); pass fewer frozen modules
to train the ViT too (full), or ``lora`` for LoRA on the image tower.
"""
import random
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import OptSampleList, SampleList
from mmdet.structures.mask import mask2bbox
from mmengine.structures import InstanceData
from torch import Tensor

from ...evaluation.functional.click_simulation import masks_iou, next_click
from .sam3 import SAM3

__all__ = ['SAM3Interactive', 'INTERACTIVE_FROZEN_MODULES']

#: Everything but the tracker neck and the interactive head (the concept parts are idle here).
INTERACTIVE_FROZEN_MODULES = ('backbone', 'neck', 'text_encoder', 'geometry_encoder', 'encoder',
                              'decoder', 'bbox_head')


@MODELS.register_module()
class SAM3Interactive(SAM3):
    """Args:
        prompt_sampler (dict): :class:`InteractivePromptSampler` config (first prompts,
            correction clicks, ``max_objects``).
        interactive_loss (dict): :class:`SAMInteractiveLoss` config.
        num_correction_rounds (int): rounds that add a click after the first prompt (SAM: 8).
        num_no_click_rounds (int): rounds that only feed the previous logits back (SAM: 2);
            with SAM's numbers 1 + 8 + 2 = 11 iterations.
        num_clicks (int): clicks simulated per object in ``predict`` (20 for NoC@85 / NoC@90).
        eval_multimask_first (bool): the first evaluation click asks for 3 masks and keeps the
            one with the highest predicted IoU (SAM's practice for an ambiguous single click).
        point_trains_single_mask (bool): a first prompt of one point also trains the
            single-mask output (output 0), besides the best of the 3 multimask outputs. On
            data with few, distinct objects per image the best-of-3 loss alone lets the
            3 candidates specialise by appearance (one per colour) and ignore the click; this
            term makes the click count from the first round. Default False (SAM's recipe).
        mask_prompt_choice (str): which output of a round becomes the next round's mask prompt
            and error region: ``'iou'`` (SAM: the highest predicted IoU, as the click
            simulator and the predictor choose) or ``'best'`` (the candidate the mask loss
            trained, i.e. the one closest to the ground truth). Measured on the shapes data
            from scratch, ``'best'`` trains the model to trust mask prompts that evaluation
            does not give it (its failures were same-coloured second shapes; with ``'iou'``
            the loss falls earlier, see docs/interactive.md), so ``'iou'`` is the default and
            the configs' choice.
        frozen_modules (Sequence[str]): default :data:`INTERACTIVE_FROZEN_MODULES`.
        **kwargs: :class:`SAM3` arguments; ``tracker_neck`` and ``interactive_head`` are
            required.
    """

    def __init__(self,
                 prompt_sampler: Optional[dict] = None,
                 interactive_loss: Optional[dict] = None,
                 num_correction_rounds: int = 8,
                 num_no_click_rounds: int = 2,
                 num_clicks: int = 20,
                 eval_multimask_first: bool = True,
                 point_trains_single_mask: bool = False,
                 mask_prompt_choice: str = 'iou',
                 frozen_modules: Sequence[str] = INTERACTIVE_FROZEN_MODULES,
                 **kwargs):
        if kwargs.get('tracker_neck') is None or kwargs.get('interactive_head') is None:
            raise ValueError('SAM3Interactive needs tracker_neck and interactive_head in the '
                             'model config (e.g. _base_ = configs/_base_/models/'
                             'sam3_tiny_interactive.py)')
        for name, value, low in (('num_correction_rounds', num_correction_rounds, 0),
                                 ('num_no_click_rounds', num_no_click_rounds, 0),
                                 ('num_clicks', num_clicks, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f'{name} must be an int >= {low}, got {value!r}')
        if mask_prompt_choice not in ('iou', 'best'):
            raise ValueError(f"mask_prompt_choice must be 'iou' or 'best', got "
                             f'{mask_prompt_choice!r}')
        super().__init__(frozen_modules=frozen_modules, **kwargs)
        self.prompt_sampler = TASK_UTILS.build(
            prompt_sampler or dict(type='InteractivePromptSampler'))
        self.interactive_loss = MODELS.build(interactive_loss or dict(type='SAMInteractiveLoss'))
        self.num_correction_rounds = num_correction_rounds
        self.num_no_click_rounds = num_no_click_rounds
        self.num_clicks = num_clicks
        self.eval_multimask_first = eval_multimask_first
        self.point_trains_single_mask = point_trains_single_mask
        self.mask_prompt_choice = mask_prompt_choice

    # ------------------------------------------------------------------------------------------
    def _image_feats(self, batch_inputs: Tensor) -> Dict[str, Tensor]:
        size = self.interactive_head.image_size
        if tuple(batch_inputs.shape[-2:]) != (size, size):
            raise ValueError(f'SAM3Interactive: network input {tuple(batch_inputs.shape[-2:])} '
                             f'must be the head\'s {size} x {size} square (click coordinates '
                             f'refer to it): resize and pad to {size} in the pipeline '
                             f'(Resize(scale=({size}, {size}), keep_ratio=True) + '
                             f'Pad(size=({size}, {size})))')
        return self.interactive_head.image_feats(self.extract_tracker_feat(batch_inputs))

    @staticmethod
    def _gt_masks(sample, device) -> Tensor:
        gt = sample.gt_instances
        if 'masks' not in gt:
            raise KeyError('SAM3Interactive needs gt_instances.masks in every data sample: '
                           'LoadAnnotations(with_mask=True) in the pipeline')
        masks = gt.masks
        if hasattr(masks, 'to_tensor'):
            return masks.to_tensor(dtype=torch.bool, device=device)
        return torch.as_tensor(masks, device=device).bool()

    def _round_plan(self) -> Tuple[bool, ...]:
        """Whether each round after the first adds a click (SAM: one no-click round at a
        random place among the correction rounds, one at the end)."""
        plan = [True] * self.num_correction_rounds
        if self.num_no_click_rounds:
            for _ in range(self.num_no_click_rounds - 1):
                plan.insert(random.randint(0, len(plan)), False)
            plan.append(False)
        return tuple(plan)

    @staticmethod
    def _chosen(logits: Tensor, iou_pred: Tensor, valid: Tensor) -> Tensor:
        """The candidate with the highest predicted IoU among the valid ones: ``(B, 1, h, w)``."""
        pick = iou_pred.detach().masked_fill(~valid, float('-inf')).argmax(1)
        return logits[torch.arange(len(logits), device=logits.device), pick][:, None]

    # ------------------------------------------------------------------------------------------
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        feats = self._image_feats(batch_inputs)
        device = batch_inputs.device
        gts, img_ids = [], []
        for i, sample in enumerate(batch_data_samples):
            masks = self._gt_masks(sample, device)
            keep = self.prompt_sampler.select_objects(len(masks), device=device)
            gts.append(masks[keep])
            img_ids.append(torch.full((len(keep),), i, dtype=torch.long, device=device))
        gt = torch.cat(gts) if gts else torch.zeros(0, *batch_inputs.shape[-2:], device=device)
        if not len(gt):
            # Nothing to learn from; keep every trainable parameter in the graph for DDP.
            zero = sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)
            return dict(loss_mask=zero)
        img_ids = torch.cat(img_ids)
        num = len(gt)
        coords, labels, is_box = self.prompt_sampler.first_prompts(gt)
        single = torch.tensor([True, False, False, False], device=device).expand(num, 4)
        valid = torch.where(is_box[:, None], single, ~single)  # one point: the 3 multimasks
        losses: Dict[str, Tensor] = {}
        mask_input = None
        for round_idx, add_click in enumerate((True, ) + self._round_plan()):
            if round_idx > 0:
                if add_click:
                    pred = F.interpolate(mask_input, gt.shape[-2:], mode='bilinear',
                                         align_corners=False)[:, 0] > 0
                    new_coords, new_labels = self.prompt_sampler.correction_clicks(pred, gt)
                    coords = torch.cat([coords, new_coords.to(coords)], 1)
                    labels = torch.cat([labels, new_labels.to(labels)], 1)
                valid = single
            out = self.interactive_head(feats, coords, labels, mask_input,
                                        multimask_output=True, img_ids=img_ids)
            logits = out['all_low_res_logits']
            # round 0: optionally the single-mask output of the one-point prompts as well
            also_first = ~is_box if round_idx == 0 and self.point_trains_single_mask else None
            terms = self.interactive_loss(logits, out['all_iou_pred'],
                                          out['object_score_logits'], gt, valid, also_first)
            best = terms.pop('best_index')
            for key, value in terms.items():
                losses[key] = losses[key] + value if key in losses else value
            if self.mask_prompt_choice == 'best':
                rows = torch.arange(num, device=device)
                mask_input = logits[rows, best][:, None].detach()
            else:
                mask_input = self._chosen(logits, out['all_iou_pred'], valid).detach()
        return losses

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def simulate_clicks(self, feats: Dict[str, Tensor], gt_masks: Tensor,
                        num_clicks: Optional[int] = None):
        """Click-simulator rounds on one image's objects.

        Args:
            feats: :meth:`SAM3InteractiveHead.image_feats` of the one image.
            gt_masks (Tensor): ``(N, H, W)`` bool, at most the model-input size (the part of
                the input the image covers, top-left aligned).
            num_clicks (int): default ``self.num_clicks``.

        Returns:
            tuple: ``ious`` (N, num_clicks) float64 numpy, final masks ``(N, H, W)`` bool,
            final predicted IoUs ``(N,)``.
        """
        num_clicks = num_clicks or self.num_clicks
        head = self.interactive_head
        num, h, w = gt_masks.shape
        size = head.image_size
        gt_np = gt_masks.cpu().numpy()
        pred_np = np.zeros_like(gt_np)
        ious = np.zeros((num, num_clicks), dtype=np.float64)
        device = feats['image_embed'].device
        coords = torch.zeros(num, 0, 2, device=device)
        labels = torch.zeros(num, 0, dtype=torch.int32, device=device)
        mask_input, scores = None, torch.zeros(num, device=device)
        for k in range(num_clicks):
            new_c = torch.zeros(num, 1, 2)
            new_l = torch.full((num, 1), -1, dtype=torch.int32)  # exact already: padding
            for j in range(num):
                click = next_click(pred_np[j], gt_np[j])
                if click is not None:
                    new_c[j, 0] = torch.tensor([click.x, click.y], dtype=torch.float32)
                    new_l[j, 0] = click.label
            coords = torch.cat([coords, new_c.to(device)], 1)
            labels = torch.cat([labels, new_l.to(device)], 1)
            multimask = k == 0 and self.eval_multimask_first
            out = head(feats, coords, labels, mask_input, multimask_output=multimask)
            valid = torch.ones_like(out['iou_pred'], dtype=torch.bool)
            mask_input = self._chosen(out['low_res_logits'], out['iou_pred'], valid)
            scores = out['iou_pred'].max(1).values
            logits = F.interpolate(mask_input, (size, size), mode='bilinear',
                                   align_corners=False)[:, 0, :h, :w]
            pred_np = (logits > head.mask_threshold).cpu().numpy()
            ious[:, k] = masks_iou(pred_np, gt_np)
        return ious, torch.from_numpy(pred_np), scores

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Simulate ``num_clicks`` clicks on every GT instance (see the module docstring)."""
        feats = self._image_feats(batch_inputs)
        for i, sample in enumerate(batch_data_samples):
            gt = self._gt_masks(sample, batch_inputs.device)
            h, w = sample.metainfo.get('img_shape', gt.shape[-2:])
            gt = gt[:, :h, :w]
            one = {k: v[i:i + 1] for k, v in feats.items()}
            if len(gt):
                ious, masks, scores = self.simulate_clicks(one, gt)
            else:
                ious = np.zeros((0, self.num_clicks))
                masks, scores = torch.zeros(0, h, w, dtype=torch.bool), torch.zeros(0)
            sample.click_ious = torch.from_numpy(ious)
            if rescale and 'ori_shape' in sample.metainfo and len(masks):
                masks = F.interpolate(masks[:, None].float(), tuple(sample.ori_shape),
                                      mode='nearest')[:, 0].bool()
            pred = InstanceData()
            pred.masks = masks
            pred.scores = scores.float().cpu()
            pred.labels = sample.gt_instances.labels.cpu() if 'labels' in sample.gt_instances \
                else torch.zeros(len(masks), dtype=torch.long)
            pred.bboxes = mask2bbox(masks) if len(masks) else torch.zeros(0, 4)
            sample.pred_instances = pred
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Dict[str, Tensor]:
        """Raw head outputs for one click at the centre of every GT instance (the first
        click of the simulator), multimask."""
        if batch_data_samples is None:
            raise ValueError('SAM3Interactive needs data samples with gt_instances.masks')
        feats = self._image_feats(batch_inputs)
        coords, img_ids = [], []
        for i, sample in enumerate(batch_data_samples):
            for mask in self._gt_masks(sample, 'cpu').numpy():
                click = next_click(np.zeros_like(mask), mask)
                if click is not None:
                    coords.append([click.x, click.y])
                    img_ids.append(i)
        if not coords:
            return {}
        device = batch_inputs.device
        coords = torch.tensor(coords, dtype=torch.float32, device=device)[:, None]
        labels = torch.ones(len(coords), 1, dtype=torch.int32, device=device)
        return self.interactive_head(feats, coords, labels, None, True,
                                     torch.tensor(img_ids, device=device))
