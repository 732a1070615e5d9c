"""RandomOffsetPad: zero-pad to a fixed square canvas at a random offset (official PadToSizeAPI).

After the square resize the image is s x s (s <= size); it is placed at a random (left, top) in a
``size`` x ``size`` canvas filled with ``pad_val`` (0, which becomes -1 after the
(x - 127.5) / 127.5 normalisation in the data preprocessor, as in the official pipeline). Boxes, masks, the semantic
map and any ``prompt_boxes`` are shifted by the same offset, so they stay on the same pixels.

Required keys: ``img`` (H, W, C) with H, W <= size.
Modified keys: ``img`` (size, size, C), ``img_shape`` = (size, size), ``gt_bboxes`` (+[l, t, l, t]),
``gt_masks`` (BitmapMasks / PolygonMasks of (size, size)), ``gt_seg_map``, ``prompt_boxes``.
Added keys: ``pad_shape`` (size, size), ``pad_fixed_size``, ``pad_param`` float32 (4,) =
[top, bottom, left, right] (as mmyolo's letterbox), ``pad_offset`` (left, top).
A network-frame point maps back to the original image by ``(xy - (left, top)) / scale_factor``.
"""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks


@TRANSFORMS.register_module()
class RandomOffsetPad(BaseTransform):
    """Args:
        size (int): side of the square canvas (1008 official; any multiple of 14 works).
        random_offset (bool): random left/top split of the padding (official); False pads
            bottom/right only.
        pad_val (int | float): image fill value (0).
        seg_pad_val (int): fill of ``gt_seg_map`` (255 = ignore).
    """

    def __init__(self, size: int = 1008, random_offset: bool = True, pad_val=0,
                 seg_pad_val: int = 255) -> None:
        self.size = int(size)
        self.random_offset = random_offset
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val

    def _canvas(self, arr: np.ndarray, fill, top: int, left: int) -> np.ndarray:
        h, w = arr.shape[:2]
        out = np.full((self.size, self.size) + arr.shape[2:], fill, dtype=arr.dtype)
        out[top:top + h, left:left + w] = arr
        return out

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        if h > self.size or w > self.size:
            raise ValueError(f'RandomOffsetPad(size={self.size}): image '
                             f"{results.get('img_path', '')} is {h}x{w} after resizing, larger "
                             'than the canvas; resize to at most the pad size first')
        if self.random_offset:
            left = int(np.random.randint(0, self.size - w + 1))
            top = int(np.random.randint(0, self.size - h + 1))
        else:
            left = top = 0
        results['img'] = self._canvas(img, self.pad_val, top, left)

        boxes = results.get('gt_bboxes')
        if boxes is not None:
            if isinstance(boxes, BaseBoxes):
                boxes.translate_([left, top])
            else:
                results['gt_bboxes'] = boxes + np.array([left, top, left, top], boxes.dtype)

        masks = results.get('gt_masks')
        if isinstance(masks, BitmapMasks):
            if masks.masks.shape[1:] != (h, w) and len(masks):
                raise ValueError(f'gt_masks are {masks.masks.shape[1:]} but the image is {(h, w)}')
            padded = np.zeros((len(masks), self.size, self.size), dtype=masks.masks.dtype)
            padded[:, top:top + h, left:left + w] = masks.masks[:, :h, :w]
            results['gt_masks'] = BitmapMasks(padded, self.size, self.size)
        elif isinstance(masks, PolygonMasks):
            shifted = []
            for polys in masks.masks:
                new = []
                for p in polys:
                    p = np.asarray(p, dtype=np.float64).copy()
                    p[0::2] += left
                    p[1::2] += top
                    new.append(p)
                shifted.append(new)
            results['gt_masks'] = PolygonMasks(shifted, self.size, self.size)

        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = self._canvas(results['gt_seg_map'], self.seg_pad_val, top,
                                                 left)
        if results.get('prompt_boxes') is not None:
            off = torch.tensor([left, top, left, top], dtype=torch.float32)
            results['prompt_boxes'] = [torch.as_tensor(b, dtype=torch.float32) + off
                                       for b in results['prompt_boxes']]

        results['img_shape'] = (self.size, self.size)
        results['pad_shape'] = (self.size, self.size)
        results['pad_fixed_size'] = (self.size, self.size)
        results['pad_param'] = np.array(
            [top, self.size - h - top, left, self.size - w - left], dtype=np.float32)
        results['pad_offset'] = (left, top)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'random_offset={self.random_offset}, pad_val={self.pad_val})')
