"""Sine position encodings used by SAM 3 (feature maps, prompt boxes and reference boxes).

Everything here is computed on the fly on the input's device: no cached tensors, so the modules
replicate cleanly under DataParallel and move with ``Module.to``. Channel layout everywhere:
per coordinate, ``sin`` on even and ``cos`` on odd channels (interleaved), frequency
``temperature ** (2 * (i // 2) / num_feats)``.
"""
import math
from typing import Optional

import torch
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = [
    'SAM3SinePositionEncoding', 'sine_encode_coords', 'encode_box_cxcywh',
    'gen_sineembed_for_position'
]


def _dim_t(num_feats: int, temperature: float, device) -> Tensor:
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature**(2 * torch.div(dim_t, 2, rounding_mode='floor') / num_feats)


def _interleave_sin_cos(pos: Tensor) -> Tensor:
    """``(..., F)`` phases -> ``(..., F)`` with sin of even and cos of odd channels."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_encode_coords(coords: Tensor,
                       num_feats: int = 128,
                       temperature: float = 10000.,
                       scale: float = 2 * math.pi) -> Tensor:
    """Encode normalised scalar coordinates.

    Args:
        coords (Tensor): ``(...)`` values, normally in ``[0, 1]``.
        num_feats (int): Output channels per coordinate (even).

    Returns:
        Tensor: ``(..., num_feats)`` float32.
    """
    dim_t = _dim_t(num_feats, temperature, coords.device)
    return _interleave_sin_cos((coords.float() * scale)[..., None] / dim_t)


def encode_box_cxcywh(boxes: Tensor,
                      num_feats: int = 256,
                      temperature: float = 10000.,
                      scale: float = 2 * math.pi) -> Tensor:
    """Encode normalised ``(cx, cy, w, h)`` boxes as ``[sine(cy), sine(cx), h, w]``.

    Args:
        boxes (Tensor): ``(..., 4)`` normalised cx, cy, w, h.
        num_feats (int): Channels of the two sine parts together (``num_feats // 2`` each).

    Returns:
        Tensor: ``(..., num_feats + 2)``; 258 channels for the SAM 3 geometry encoder.
    """
    cx, cy, w, h = boxes.unbind(-1)
    half = num_feats // 2
    pos_x = sine_encode_coords(cx, half, temperature, scale)
    pos_y = sine_encode_coords(cy, half, temperature, scale)
    return torch.cat((pos_y, pos_x, h[..., None].float(), w[..., None].float()), dim=-1)


def gen_sineembed_for_position(pos: Tensor, num_feats: int = 256) -> Tensor:
    """Sine embedding of reference points or boxes (DAB-DETR style, temperature 10000, 2 pi).

    Args:
        pos (Tensor): ``(..., 2)`` normalised (x, y) or ``(..., 4)`` normalised (cx, cy, w, h).
        num_feats (int): Channels per *pair* of coordinates, i.e. ``num_feats // 2`` per
            coordinate (SAM 3 passes ``embed_dims``).

    Returns:
        Tensor: ``(..., num_feats)`` ordered (y, x) for points, ``(..., 2 * num_feats)``
        ordered (y, x, w, h) for boxes.
    """
    if num_feats % 2 != 0:
        raise ValueError(f'num_feats must be even, got {num_feats}')
    half = num_feats // 2
    enc = [sine_encode_coords(pos[..., i], half) for i in range(pos.shape[-1])]
    if pos.shape[-1] == 2:
        return torch.cat((enc[1], enc[0]), dim=-1)
    if pos.shape[-1] == 4:
        return torch.cat((enc[1], enc[0], enc[2], enc[3]), dim=-1)
    raise ValueError(f'Unknown pos.shape[-1]: {pos.shape[-1]}')


@MODELS.register_module()
class SAM3SinePositionEncoding(nn.Module):
    """2-D sine encoding of a feature map (DETR style, normalised).

    Rows and columns are numbered ``1..H`` and ``1..W``, divided by the last index (+eps) and
    scaled by ``scale``; the output is ``cat(pos_y, pos_x)`` over channels.

    Args:
        num_feats (int): Output channels (half for y, half for x). SAM 3 uses 256.
        temperature (float): Frequency base.
        normalize (bool): Normalise the indices to ``(0, 1]`` before scaling.
        scale (float, optional): Defaults to ``2 * pi`` (only with ``normalize``).
        eps (float): Added to the normaliser.

    Forward:
        x ``(B, *, H, W)`` (only its shape and device are used) -> ``(B, num_feats, H, W)``
        float32.
    """

    def __init__(self,
                 num_feats: int = 256,
                 temperature: float = 10000.,
                 normalize: bool = True,
                 scale: Optional[float] = None,
                 eps: float = 1e-6):
        super().__init__()
        if num_feats % 2 != 0:
            raise ValueError('num_feats must be even')
        if scale is not None and not normalize:
            raise ValueError('normalize should be True if scale is passed')
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.eps = eps

    def encode_xy(self, x: Tensor, y: Tensor):
        """Encode normalised coordinates -> ``(pos_x, pos_y)``, each ``(..., num_feats // 2)``."""
        half = self.num_feats // 2
        return (sine_encode_coords(x, half, self.temperature, self.scale),
                sine_encode_coords(y, half, self.temperature, self.scale))

    def encode_boxes(self, boxes: Tensor) -> Tensor:
        """``(..., 4)`` normalised cx, cy, w, h -> ``(..., num_feats + 2)``."""
        return encode_box_cxcywh(boxes, self.num_feats, self.temperature, self.scale)

    def forward(self, x: Tensor) -> Tensor:
        bs, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)
        if self.normalize:
            y_embed = y_embed / (y_embed[-1:] + self.eps) * self.scale
            x_embed = x_embed / (x_embed[-1:] + self.eps) * self.scale
        half = self.num_feats // 2
        dim_t = _dim_t(half, self.temperature, x.device)
        pos_y = _interleave_sin_cos(y_embed[:, None] / dim_t)  # (H, F)
        pos_x = _interleave_sin_cos(x_embed[:, None] / dim_t)  # (W, F)
        pos = torch.cat(
            (pos_y[:, None, :].expand(h, w, half), pos_x[None, :, :].expand(h, w, half)), dim=-1)
        return pos.permute(2, 0, 1)[None].expand(bs, -1, -1, -1).contiguous()
