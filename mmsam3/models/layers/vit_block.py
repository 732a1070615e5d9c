"""Building blocks of SAM 3's plain ViT: RoPE attention, MLP and the pre-norm block.

Stochastic depth is mmcv's ``DropPath``.

Submodule names follow the official checkpoint (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``), so a trunk state dict loads without renaming (the official
``attn.freqs_cis`` buffers are not needed: RoPE is recomputed, see :mod:`.rope_2d`).
"""
from typing import Optional, Tuple, Union

import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmdet.registry import MODELS
from torch import Tensor, nn

from .checkpoint import maybe_checkpoint
from .rope_2d import RoPE2D

__all__ = [
    'window_partition', 'window_unpartition', 'SAM3ViTAttention', 'SAM3ViTMLP', 'SAM3ViTBlock'
]


def window_partition(x: Tensor, window_size: int) -> Tuple[Tensor, Tuple[int, int]]:
    """Cut a ``(B, H, W, C)`` map into ``(B * nW, ws, ws, C)`` windows.

    The map is zero-padded at the bottom/right up to multiples of ``window_size`` first (the
    padded tokens then take part in attention unmasked, as in the official model).

    Returns:
        tuple: the windows (row-major over the window grid, per image) and the padded ``(Hp, Wp)``.
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(windows: Tensor, window_size: int, padded_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws, ws, C)`` -> ``(B, H, W, C)``."""
    hp, wp = padded_hw
    h, w = hw
    nh, nw = hp // window_size, wp // window_size
    b = windows.shape[0] // (nh * nw)
    x = windows.reshape(b, nh, nw, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


# Not SAM3MultiheadAttention: the checkpoint stores a fused ``qkv`` Linear + ``proj``, not
# ``in_proj_weight`` / ``out_proj``, and q / k get RoPE between projection and attention.
@MODELS.register_module()
class SAM3ViTAttention(nn.Module):
    """Multi-head self-attention over a token grid with 2-D RoPE on q and k.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Heads; ``embed_dims // num_heads`` must be a multiple of 4 when RoPE
            is on.
        qkv_bias (bool): Bias of the fused ``qkv`` projection.
        use_rope (bool): Apply 2-D RoPE to q and k.
        rope_theta (float): RoPE base.
        rope_pt_size (int | tuple | None): Pre-training RoPE grid (``interp`` reference).
        rope_interp (bool): Squeeze positions into ``rope_pt_size`` (official ``use_interp_rope``).

    Forward:
        x (Tensor): ``(B, H, W, C)``; ``H x W`` is the grid the RoPE angles are computed for
        (a window for window blocks, the whole map for global blocks).

        Returns ``(B, H, W, C)``.

    ``qkv`` rows are ``[q; k; v]``, head-major inside each third, like the official layout.
    Attention is ``F.scaled_dot_product_attention`` without mask, scale ``head_dim ** -0.5``.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 use_rope: bool = True,
                 rope_theta: float = 10000.0,
                 rope_pt_size: Optional[Union[int, Tuple[int, int]]] = None,
                 rope_interp: bool = True):
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = embed_dims // num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.rope = RoPE2D(self.head_dim, rope_theta, rope_pt_size,
                           rope_interp) if use_rope else None

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        n = h * w
        # (B, N, 3, heads, hd) -> three (B, heads, N, hd)
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if self.rope is not None:
            q, k = self.rope(q, k, (h, w))
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(x)


@MODELS.register_module()
class SAM3ViTMLP(nn.Module):
    """Two-layer MLP ``fc1 -> GELU (exact erf) -> fc2``; input/output ``(..., in_features)``."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


@MODELS.register_module()
class SAM3ViTBlock(nn.Module):
    """Pre-norm ViT block with optional window attention.

    ``x = x + drop_path(attn(norm1(x)))`` (in windows of ``window_size`` if > 0, after
    zero-padding the normalised map), then ``x = x + drop_path(mlp(norm2(x)))``.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): MLP hidden size is ``int(embed_dims * mlp_ratio)``.
        qkv_bias (bool): Bias of the ``qkv`` projection.
        drop_path (float): Stochastic depth rate of both residual branches (mmcv ``DropPath``).
        window_size (int): Window side in tokens; 0 means global attention.
        use_rope, rope_theta, rope_pt_size, rope_interp: see :class:`SAM3ViTAttention`.
        norm_eps (float): LayerNorm epsilon.
        with_cp (bool): Recompute the block in backward during training to save memory
            (see :func:`~mmsam3.models.layers.checkpoint.maybe_checkpoint`).

    Forward:
        x (Tensor): ``(B, H, W, C)``. Returns ``(B, H, W, C)``.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.0,
                 qkv_bias: bool = True,
                 drop_path: float = 0.0,
                 window_size: int = 0,
                 use_rope: bool = True,
                 rope_theta: float = 10000.0,
                 rope_pt_size: Optional[Union[int, Tuple[int, int]]] = None,
                 rope_interp: bool = True,
                 norm_eps: float = 1e-5,
                 with_cp: bool = False):
        super().__init__()
        self.window_size = int(window_size)
        self.with_cp = with_cp
        self.norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = SAM3ViTAttention(embed_dims,
                                     num_heads,
                                     qkv_bias=qkv_bias,
                                     use_rope=use_rope,
                                     rope_theta=rope_theta,
                                     rope_pt_size=rope_pt_size,
                                     rope_interp=rope_interp)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = SAM3ViTMLP(embed_dims, int(embed_dims * mlp_ratio))

    def _forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded_hw = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded_hw, hw)
        else:
            x = self.attn(x)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor) -> Tensor:
        return maybe_checkpoint(self, self._forward, x)
