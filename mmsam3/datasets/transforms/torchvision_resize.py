"""Resize the uint8 image exactly as Meta's SAM 3 preprocessing does (torchvision, not cv2).

Meta's ``Sam3Processor`` resizes the decoded uint8 image with
``torchvision.transforms.v2.Resize(size=(1008, 1008))`` on a ``(3, H, W)`` uint8 tensor:
bilinear, ``antialias=True``, rounded back to uint8, and only then scales to [0, 1] and
normalises with mean = std = 0.5. mmdet's ``Resize`` uses cv2 (or PIL) kernels instead, which
give a different grey level in about a fifth of the pixels and so move the model's logits by up
to ~3e-3. This transform keeps every other behaviour of mmdet's ``Resize`` (boxes, masks,
``scale_factor``, ``keep_ratio``) and swaps only the image kernel.

``backend='tensor'`` (default) makes the processor's call on the CPU. torchvision itself takes two
routes there: a native uint8 kernel on CPUs with AVX2, and uint8 -> float32 -> interpolate ->
clamp -> round elsewhere, which is also what the processor computes on a CUDA device. The two
differ by one grey level in about 17% of the pixels of a photograph, so Meta's own numbers
depend on the device: ``backend='tensor-float'`` always takes the float route, to match the
processor run on a GPU. ``backend='pil'`` is the path of the official *training* transforms
(``sam3.train.transforms``), which resize the PIL image with
``torchvision.transforms.functional.resize`` (PIL's antialiased bilinear filter).

The channel order does not matter (every channel is resized alone), so the BGR image of
``LoadImageFromFile`` stays BGR; ``DetDataPreprocessor(mean=127.5, std=127.5, bgr_to_rgb=True)``
then gives the same [-1, 1] values as the official ``ToDtype(float32, scale=True)`` + ``Normalize``
(to within one float32 rounding step).
"""
import mmcv
import numpy as np
import torch
from mmdet.datasets.transforms import Resize
from mmdet.registry import TRANSFORMS

__all__ = ['TorchvisionResize', 'torchvision_resize_uint8']

_BACKENDS = ('tensor', 'tensor-float', 'pil')


def torchvision_resize_uint8(img: np.ndarray, size_hw, backend: str = 'tensor') -> np.ndarray:
    """Resize an ``(H, W, C)`` (or ``(H, W)``) uint8 array to ``size_hw`` with torchvision.

    Args:
        img (np.ndarray): uint8 image, any channel order.
        size_hw (tuple[int, int]): output ``(height, width)``.
        backend (str): ``'tensor'``: ``torchvision.transforms.v2.functional.resize`` on a uint8
            ``(C, H, W)`` tensor (bilinear, antialias), as ``Sam3Processor`` on this CPU;
            ``'tensor-float'``: the same on the float32 image, then clamp and round, as
            torchvision does for uint8 on CUDA and on CPUs without AVX2; ``'pil'``:
            ``torchvision.transforms.functional.resize`` on a PIL image, as the official training
            transforms.

    Returns:
        np.ndarray: uint8, ``(height, width[, C])``, the same channel order.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F
    from torchvision.transforms.v2 import functional as F2

    if img.dtype != np.uint8:
        raise TypeError(f'TorchvisionResize reproduces the official uint8 resize; got an image '
                        f'of dtype {img.dtype}. Put it before any transform that converts the '
                        'image to float.')
    if backend not in _BACKENDS:
        raise ValueError(f'backend must be one of {_BACKENDS}, got {backend!r}')
    size = [int(size_hw[0]), int(size_hw[1])]
    if backend == 'pil':
        from PIL import Image

        if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
            raise ValueError(f'the PIL backend needs 1, 3 or 4 channels, got {img.shape[2]}')
        pil = Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img)
        out = np.asarray(F.resize(pil, size, interpolation=InterpolationMode.BILINEAR))
        return out[..., None] if img.ndim == 3 and out.ndim == 2 else out
    chw = torch.from_numpy(np.ascontiguousarray(img if img.ndim == 3 else img[..., None]))
    chw = chw.permute(2, 0, 1)
    if backend == 'tensor-float':
        out = F2.resize(chw.float(), size, interpolation=InterpolationMode.BILINEAR,
                        antialias=True)
        out = out.clamp_(0, 255).round_().to(torch.uint8)
    else:
        out = F2.resize(chw, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    out = out.permute(1, 2, 0).numpy()
    return out if img.ndim == 3 else out[..., 0]


@TRANSFORMS.register_module()
class TorchvisionResize(Resize):
    """mmdet's ``Resize`` with the image resized by torchvision as the official SAM 3 code does.

    Args:
        scale, scale_factor, keep_ratio, clip_object_border: as mmdet's ``Resize``. The official
            inference resize is ``scale=(1008, 1008), keep_ratio=False``.
        backend (str): ``'tensor'`` (default, the official ``Sam3Processor`` on a CPU),
            ``'tensor-float'`` (the processor on a GPU) or ``'pil'`` (the official training
            transforms). See :func:`torchvision_resize_uint8`.
        **kwargs: other ``Resize`` arguments (``interpolation`` applies to nothing but
            segmentation maps, which mmdet resizes with nearest neighbour anyway).

    Required keys: ``img`` (uint8). Modified keys: ``img``, ``img_shape``, ``gt_bboxes``,
    ``gt_masks``, ``gt_seg_map``. Added keys: ``scale``, ``scale_factor``, ``keep_ratio``.
    """

    def __init__(self, *args, backend: str = 'tensor', **kwargs):
        if backend not in _BACKENDS:
            raise ValueError(f'backend must be one of {_BACKENDS}, got {backend!r}')
        super().__init__(*args, **kwargs)
        self.torchvision_backend = backend

    def _resize_img(self, results: dict) -> None:
        img = results.get('img', None)
        if img is None:
            return
        h, w = img.shape[:2]
        if self.keep_ratio:
            new_w, new_h = mmcv.rescale_size((w, h), results['scale'])
        else:
            new_w, new_h = results['scale']
        resized = torchvision_resize_uint8(img, (new_h, new_w), self.torchvision_backend)
        results['img'] = resized
        results['img_shape'] = resized.shape[:2]
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, scale_factor={self.scale_factor}, '
                f'keep_ratio={self.keep_ratio}, clip_object_border={self.clip_object_border}, '
                f'backend={self.torchvision_backend!r})')
