"""InteractivePromptSampler: SAM's simulation of a user's prompts for interactive training.

SAM 1 (paper, appendix A "Training algorithm") and SAM 2 (``SAM2Train.prepare_prompt_inputs``,
``sample_random_points_from_errors``) train the click head on simulated prompts:

- the **first prompt** of an object is, with equal probability (``prob_box``), one point drawn
  uniformly from its mask, or its box with noise on every coordinate (standard deviation 10% of
  the box side, clipped to 20 px);
- every **correction click** is drawn uniformly from the error region of the current
  prediction: a false-negative pixel gives a positive click (label 1), a false-positive pixel a
  negative one (label 0). Without any error a positive click is drawn from the object;
- at most ``max_objects`` objects of an image are used per step (SAM: 64 masks per GPU).

Coordinates are ``(x, y)`` in the pixels of the masks (model-input pixels when the masks are at
the network input size); labels are SAM's: 1 / 0 clicks, 2 / 3 the box corners, -1 padding.
Randomness comes from torch's generator (seeded by mmengine's ``randomness``), or ``generator``.
"""
from typing import Optional, Tuple

import torch
from mmdet.registry import TASK_UTILS
from torch import Tensor

__all__ = ['InteractivePromptSampler']


@TASK_UTILS.register_module()
class InteractivePromptSampler:
    """Args:
        prob_box (float): probability that an object's first prompt is a noisy box (0.5).
        box_noise_std (float): noise standard deviation as a fraction of the box side (0.1).
        box_noise_max (float): noise clip in pixels (20).
        max_objects (int): objects per image per step (the rest are left out this step).
    """

    def __init__(self,
                 prob_box: float = 0.5,
                 box_noise_std: float = 0.1,
                 box_noise_max: float = 20.0,
                 max_objects: int = 64) -> None:
        if not 0 <= prob_box <= 1:
            raise ValueError(f'prob_box must be in [0, 1], got {prob_box}')
        if box_noise_std < 0 or box_noise_max < 0:
            raise ValueError('box_noise_std and box_noise_max must be >= 0, got '
                             f'{box_noise_std}, {box_noise_max}')
        if not isinstance(max_objects, int) or max_objects < 1:
            raise ValueError(f'max_objects must be a positive int, got {max_objects!r}')
        self.prob_box = prob_box
        self.box_noise_std = box_noise_std
        self.box_noise_max = box_noise_max
        self.max_objects = max_objects

    @staticmethod
    def _check_masks(masks: Tensor, name: str) -> Tensor:
        if not isinstance(masks, Tensor) or masks.dim() != 3:
            raise ValueError(f'{name} must be a (B, H, W) tensor, got '
                             f'{getattr(masks, "shape", type(masks))}')
        return masks.bool()

    def select_objects(self, num_objects: int, generator: Optional[torch.Generator] = None,
                       device=None) -> Tensor:
        """Indices of the objects used this step: all of them, or ``max_objects`` at random."""
        if num_objects <= self.max_objects:
            return torch.arange(num_objects, device=device)
        perm = torch.randperm(num_objects, generator=generator)[:self.max_objects]
        return perm.sort().values.to(device)

    @staticmethod
    def uniform_points(masks: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """One pixel drawn uniformly from each ``(H, W)`` mask: ``(B, 2)`` float ``(x, y)``.
        An empty mask gives a pixel drawn from the whole image."""
        # The k-th set pixel for k uniform in [0, count): a cumulative count and a binary
        # search (an order of magnitude cheaper than torch.multinomial on H * W weights).
        flat = masks.flatten(1)
        empty = ~flat.any(1)
        if bool(empty.any()):
            flat = flat.clone()
            flat[empty] = True
        cum = flat.cumsum(1, dtype=torch.int32)
        count = cum[:, -1].long()
        draw = torch.rand(len(count), dtype=torch.float64, generator=generator)
        k = torch.minimum((draw.to(count.device) * count).long(), count - 1)
        idx = torch.searchsorted(cum, (k + 1).to(cum.dtype)[:, None].contiguous())[:, 0]
        width = masks.shape[-1]
        return torch.stack([idx % width, idx // width], 1).float()

    @staticmethod
    def mask_boxes(masks: Tensor) -> Tensor:
        """Tight xyxy boxes (pixel indices of the extreme pixels) of ``(B, H, W)`` masks;
        an empty mask gives the whole image."""
        b, h, w = masks.shape
        rows, cols = masks.any(2), masks.any(1)
        ys = torch.arange(h, device=masks.device).float()
        xs = torch.arange(w, device=masks.device).float()
        inf = torch.tensor(float('inf'), device=masks.device)
        x1 = torch.where(cols, xs, inf).amin(1)
        x2 = torch.where(cols, xs, -inf).amax(1)
        y1 = torch.where(rows, ys, inf).amin(1)
        y2 = torch.where(rows, ys, -inf).amax(1)
        boxes = torch.stack([x1, y1, x2, y2], 1)
        whole = boxes.new_tensor([0, 0, w - 1, h - 1])
        return torch.where(masks.flatten(1).any(1)[:, None], boxes, whole)

    def noisy_boxes(self, boxes: Tensor, image_hw: Tuple[int, int],
                    generator: Optional[torch.Generator] = None) -> Tensor:
        """SAM's box jitter: each coordinate moves by N(0, (std * side)^2) clipped to
        ``box_noise_max`` px; the box stays in the image and keeps x1 <= x2, y1 <= y2."""
        h, w = image_hw
        side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
        side = side.clamp(min=1).repeat(1, 2)
        noise = torch.randn(boxes.shape, generator=generator).to(boxes) * self.box_noise_std
        noise = (noise * side).clamp(-self.box_noise_max, self.box_noise_max)
        out = boxes + noise
        out[:, 0::2] = out[:, 0::2].clamp(0, w - 1)
        out[:, 1::2] = out[:, 1::2].clamp(0, h - 1)
        x1, x2 = torch.minimum(out[:, 0], out[:, 2]), torch.maximum(out[:, 0], out[:, 2])
        y1, y2 = torch.minimum(out[:, 1], out[:, 3]), torch.maximum(out[:, 1], out[:, 3])
        return torch.stack([x1, y1, x2, y2], 1)

    def first_prompts(self, gt_masks: Tensor, generator: Optional[torch.Generator] = None
                      ) -> Tuple[Tensor, Tensor, Tensor]:
        """First prompt of each object: ``coords (B, 2, 2)``, ``labels (B, 2)`` int32 and
        ``is_box (B,)``. A point prompt is ``[point, padding]`` (labels ``[1, -1]``), a box its
        two corners (labels ``[2, 3]``)."""
        masks = self._check_masks(gt_masks, 'gt_masks')
        num = masks.shape[0]
        is_box = (torch.rand(num, generator=generator) < self.prob_box).to(masks.device)
        points = self.uniform_points(masks, generator)
        boxes = self.noisy_boxes(self.mask_boxes(masks), masks.shape[-2:], generator)
        point_coords = torch.stack([points, torch.zeros_like(points)], 1)
        coords = torch.where(is_box[:, None, None], boxes.reshape(num, 2, 2), point_coords)
        labels = torch.where(is_box[:, None],
                             torch.tensor([2, 3], device=masks.device),
                             torch.tensor([1, -1], device=masks.device)).int()
        return coords, labels, is_box

    def correction_clicks(self, pred_masks: Tensor, gt_masks: Tensor,
                          generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """One click per object drawn uniformly from the error region of ``pred_masks``:
        ``coords (B, 1, 2)``, ``labels (B, 1)`` int32 (1 on a missed object pixel, 0 on a
        wrongly covered background pixel; a positive click on the object without error)."""
        pred = self._check_masks(pred_masks, 'pred_masks')
        gt = self._check_masks(gt_masks, 'gt_masks')
        if pred.shape != gt.shape:
            raise ValueError(f'pred_masks {tuple(pred.shape)} and gt_masks {tuple(gt.shape)} '
                             'differ; resize the prediction to the ground truth')
        error = pred ^ gt
        no_error = ~error.flatten(1).any(1)
        error[no_error] = gt[no_error]
        points = self.uniform_points(error, generator)
        x, y = points[:, 0].long(), points[:, 1].long()
        rows = torch.arange(len(gt), device=gt.device)
        labels = gt[rows, y, x].int()
        return points[:, None], labels[:, None]
