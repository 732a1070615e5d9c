"""2-D axial rotary position embedding (RoPE) in real arithmetic.

SAM 3's ViT rotates queries and keys of every attention block by angles that depend on the
token's column (x) and row (y). Per head of width ``D`` (``D % 4 == 0``) the ``D / 2`` channel
pairs ``(2j, 2j + 1)`` are split in two halves:

* pairs ``j < D / 4`` rotate by ``x * s_x * w_j``,
* pairs ``j >= D / 4`` rotate by ``y * s_y * w_(j - D/4)``,

with ``w_k = theta ** (-4k / D)`` and ``s_x``, ``s_y`` the position scales. A pair ``(a, b)``
rotated by angle ``phi`` becomes ``(a cos phi - b sin phi, a sin phi + b cos phi)``; adjacent
channels form a pair (the "interleaved" convention), not the two halves of the head.

Position interpolation: with ``interp=True`` the scale of an axis is ``pt_size / grid_len``, so a
grid of any length is squeezed into the ``[0, pt_size)`` range seen in pre-training. For the
official 1008 px model this gives scale 1 in the 24x24 window blocks and 1/3 in the global blocks
(72x72 tokens).

Everything is computed from ``arange`` on the input's device at every call: there are no
buffers (nothing to convert in checkpoints, nothing to broadcast in DataParallel/DDP), no complex
dtypes (exportable with the TorchScript ONNX exporter and TensorRT), and the grid is whatever the
input holds (no fixed-resolution assertion).
"""
from typing import Optional, Tuple, Union

import torch
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['rope_2d_cos_sin', 'apply_rope_2d', 'RoPE2D']


def _axis_freqs(head_dim: int, theta: float, device: torch.device) -> Tensor:
    """Per-axis inverse frequencies ``theta ** (-4k / head_dim)``, k < head_dim / 4 (fp32)."""
    # Same expression order as the reference so the fp32 values agree bit for bit.
    exponent = torch.arange(0, head_dim, 4, device=device)[:head_dim // 4].float() / head_dim
    return 1.0 / (theta**exponent)


def rope_2d_cos_sin(head_dim: int,
                    grid_hw: Tuple[int, int],
                    scale_hw: Tuple[float, float] = (1.0, 1.0),
                    theta: float = 10000.0,
                    device: Optional[Union[str, torch.device]] = None) -> Tuple[Tensor, Tensor]:
    """Cosine and sine tables of the rotation angles for a row-major token grid.

    Args:
        head_dim (int): Channels per attention head; must be a multiple of 4.
        grid_hw (tuple[int, int]): Token grid ``(H, W)``; tokens are flattened row-major.
        scale_hw (tuple[float, float]): Position scale along y (rows) and x (columns).
        theta (float): RoPE base.
        device: Device of the returned tensors.

    Returns:
        tuple[Tensor, Tensor]: ``cos`` and ``sin`` of shape ``(H * W, head_dim // 2)``, float32.
        Column ``j`` is the angle of channel pair ``(2j, 2j + 1)``.
    """
    if head_dim % 4 != 0:
        raise ValueError(f'2-D RoPE needs head_dim divisible by 4, got {head_dim}')
    h, w = int(grid_hw[0]), int(grid_hw[1])
    freqs = _axis_freqs(head_dim, theta, device)
    # Integer coordinates are exact in fp32; scaling happens in fp32 like the reference.
    pos_x = torch.arange(w, device=device, dtype=torch.float32) * scale_hw[1]
    pos_y = torch.arange(h, device=device, dtype=torch.float32) * scale_hw[0]
    ang_x = (pos_x[:, None] * freqs[None, :])[None, :, :].expand(h, w, -1)  # (H, W, D/4)
    ang_y = (pos_y[:, None] * freqs[None, :])[:, None, :].expand(h, w, -1)  # (H, W, D/4)
    angles = torch.cat([ang_x, ang_y], dim=-1).reshape(h * w, head_dim // 2)
    return angles.cos(), angles.sin()


def apply_rope_2d(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved channel pairs of ``x`` by precomputed angles.

    Args:
        x (Tensor): ``(..., L, D)`` queries or keys (any float dtype).
        cos (Tensor): ``(L, D // 2)`` cosines.
        sin (Tensor): ``(L, D // 2)`` sines.

    Returns:
        Tensor: rotated ``x``, same shape and dtype. The rotation itself runs in float32 (as the
        reference does under autocast), then the result is cast back.
    """
    pairs = x.float().reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    a, b = pairs.unbind(-1)
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


@MODELS.register_module()
class RoPE2D(nn.Module):
    """2-D axial RoPE for queries/keys laid out on a token grid (stateless: no parameters/buffers).

    Args:
        head_dim (int): Channels per head (multiple of 4).
        theta (float): RoPE base. Default: 10000.
        pt_size (tuple[int, int] | int | None): Grid size used in pre-training (official
            ``rope_pt_size``; SAM 3 uses the window size, 24). Needed when ``interp`` is True.
        interp (bool): Scale positions by ``pt_size / grid`` per axis (official
            ``use_interp_rope``). When False positions are the integer token coordinates.

    Forward:
        q, k (Tensor): ``(B, heads, H * W, head_dim)``.
        grid_hw (tuple[int, int]): ``(H, W)`` of the token grid the sequence was flattened from.

        Returns the rotated ``(q, k)`` with unchanged shapes and dtypes.
    """

    def __init__(self,
                 head_dim: int,
                 theta: float = 10000.0,
                 pt_size: Optional[Union[int, Tuple[int, int]]] = None,
                 interp: bool = True):
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f'2-D RoPE needs head_dim divisible by 4, got {head_dim}')
        if isinstance(pt_size, int):
            pt_size = (pt_size, pt_size)
        if interp and pt_size is None:
            raise ValueError('RoPE2D(interp=True) needs pt_size')
        self.head_dim = head_dim
        self.theta = float(theta)
        self.pt_size = None if pt_size is None else (int(pt_size[0]), int(pt_size[1]))
        self.interp = interp

    def scale_for(self, grid_hw: Tuple[int, int]) -> Tuple[float, float]:
        """Position scale ``(s_y, s_x)`` for a grid of ``grid_hw`` tokens."""
        if not self.interp:
            return 1.0, 1.0
        return self.pt_size[0] / int(grid_hw[0]), self.pt_size[1] / int(grid_hw[1])

    def cos_sin(self,
                grid_hw: Tuple[int, int],
                device: Optional[Union[str, torch.device]] = None) -> Tuple[Tensor, Tensor]:
        """``(cos, sin)`` tables, each ``(H * W, head_dim // 2)`` float32, for ``grid_hw``."""
        return rope_2d_cos_sin(self.head_dim, grid_hw, self.scale_for(grid_hw), self.theta, device)

    def forward(self, q: Tensor, k: Tensor, grid_hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        cos, sin = self.cos_sin(grid_hw, q.device)
        return apply_rope_2d(q, cos, sin), apply_rope_2d(k, cos, sin)

    def extra_repr(self) -> str:
        return (f'head_dim={self.head_dim}, theta={self.theta}, pt_size={self.pt_size}, '
                f'interp={self.interp}')
