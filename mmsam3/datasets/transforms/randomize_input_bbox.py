"""RandomizeInputBbox: jitter the box exemplars (prompt boxes) with Gaussian noise.

Training-time augmentation matching the official ``RandomizeInputBbox(box_noise_std,
box_noise_max, minimum_box_area)``. Every exemplar box is perturbed on its own: four standard
normal draws (``torch.randn(4)``, one call per box, prompts and boxes visited in order, so a
seeded torch RNG reproduces the official numbers) are scaled by ``box_noise_std`` and by the
box's own (w, h, w, h); with ``box_noise_max`` set, each offset is then limited to
+-``box_noise_max`` pixels. The offsets are added to the xyxy corners and the result is clipped
to the image, [0, W] x [0, H]. When the clipped box has area <= ``minimum_box_area`` the original
box is kept. ``box_noise_std=0`` disables the transform and consumes no random numbers.

The boxes must already be in the network-input frame, so put this transform after every
geometric transform (resize, ``RandomOffsetPad``) and after ``TextQueryToVisual``, which
creates them; the clip uses ``img_shape``.

Required keys: ``img_shape`` (h, w) (only read when there is a box to noise).
Modified keys: ``prompt_boxes``: list (P,), one entry per prompt, each a float32 tensor / array
(K, 4) xyxy in network-input pixels or None. Entries with K >= 1 become new float32 tensors
(K, 4); entries with K = 0 or None are left as they are. No ``prompt_boxes`` key: no-op.
"""
from typing import Optional

import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomizeInputBbox(BaseTransform):
    """Args:
        box_noise_std (float): noise std as a fraction of the box side (0 = off).
        box_noise_max (float, optional): cap on each corner offset in pixels (None = no cap).
        minimum_box_area (float): a noised box with area <= this falls back to the original.
    """

    def __init__(self, box_noise_std: float = 0.0, box_noise_max: Optional[float] = None,
                 minimum_box_area: float = 0.0) -> None:
        if box_noise_std < 0:
            raise ValueError(f'box_noise_std must be >= 0, got {box_noise_std}')
        if box_noise_max is not None and box_noise_max < 0:
            raise ValueError(f'box_noise_max must be >= 0 or None, got {box_noise_max}')
        self.box_noise_std = float(box_noise_std)
        self.box_noise_max = None if box_noise_max is None else float(box_noise_max)
        self.minimum_box_area = float(minimum_box_area)

    def _noise_one(self, box: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Noise one xyxy float32 box (4,); same operation order as the official code."""
        offset = self.box_noise_std * torch.randn(4)
        side = box[[2, 3, 2, 3]] - box[[0, 1, 0, 1]]  # (w, h, w, h)
        offset = offset * side
        if self.box_noise_max is not None:
            offset = offset.clamp(-self.box_noise_max, self.box_noise_max)
        upper = torch.tensor([width, height, width, height], dtype=box.dtype)
        noised = torch.minimum((box + offset).clamp(min=0), upper)
        # Same test as the official code: (x2 - x1) * (y2 - y1) of the clipped box.
        area = (noised[2] - noised[0]) * (noised[3] - noised[1])
        if area <= self.minimum_box_area:
            return box
        return noised

    def transform(self, results: dict) -> dict:
        prompt_boxes = results.get('prompt_boxes')
        if prompt_boxes is None or self.box_noise_std == 0:
            return results
        out = []
        for boxes in prompt_boxes:
            if boxes is None or len(boxes) == 0:
                out.append(boxes)
                continue
            if 'img_shape' not in results:
                raise KeyError('RandomizeInputBbox needs results["img_shape"] to clip the '
                               'noised boxes; run it after the resize / pad transforms')
            height, width = results['img_shape'][:2]
            boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            out.append(torch.stack([self._noise_one(b, height, width) for b in boxes]))
        results['prompt_boxes'] = out
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(box_noise_std={self.box_noise_std}, '
                f'box_noise_max={self.box_noise_max}, '
                f'minimum_box_area={self.minimum_box_area})')
