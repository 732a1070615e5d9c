"""SAM 3's image encoder: a plain ViT (ViTDet-style) with 2-D RoPE and window attention.

Parameter names equal the official trunk (``backbone.vision_backbone.trunk.*`` in ``sam3.pt``)
minus the ``attn.freqs_cis`` buffers, which are recomputed on the fly (see
:mod:`mmsam3.models.layers.rope_2d`): ``pos_embed``, ``patch_embed.proj.weight``, ``ln_pre.*``,
``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..layers.vit_block import SAM3ViTBlock

__all__ = ['SAM3ViT', 'get_vit_layer_id']


def get_vit_layer_id(param_name: str, num_layers: int) -> int:
    """Layer index of a ViT parameter for layer-wise learning-rate decay.

    Same rule as the official ``ViT.get_layer_id``: ``patch_embed``, ``pos_embed``, ``cls_token``
    and ``ln_pre`` are layer 0, ``blocks.k.*`` is layer ``k + 1`` and anything else (including
    ``rel_pos``) is ``num_layers + 1``. ``param_name`` may carry a prefix such as ``backbone.``;
    only pass ViT parameters (a text ``resblocks.k`` name would also match ``blocks``).

    Args:
        param_name (str): Parameter name, e.g. ``'backbone.blocks.3.attn.qkv.weight'``.
        num_layers (int): Number of ViT blocks (32 for SAM 3).

    Returns:
        int: layer id in ``[0, num_layers + 1]``.
    """
    if 'rel_pos' in param_name:
        return num_layers + 1
    if any(key in param_name for key in ('ln_pre', 'pos_embed', 'cls_token', 'patch_embed')):
        return 0
    if 'blocks' in param_name:
        return int(param_name.split('blocks', 1)[1].split('.')[1]) + 1
    return num_layers + 1


class _PatchEmbed(nn.Module):
    """Non-overlapping patch conv: ``(B, 3, H, W)`` -> ``(B, H/p, W/p, C)`` (channels last)."""

    def __init__(self, patch_size: int, in_channels: int, embed_dims: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_channels,
                              embed_dims,
                              kernel_size=patch_size,
                              stride=patch_size,
                              bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


@MODELS.register_module()
class SAM3ViT(BaseModule):
    """SAM 3 ViT trunk (defaults: the official 1008 px ViT-L-like model, 446 M parameters).

    Pipeline: patch conv (no bias) -> + tiled absolute position embedding -> ``ln_pre`` ->
    ``depth`` pre-norm blocks (window attention except ``global_att_blocks``) -> channels-first map.

    Args:
        img_size (int): Nominal input size (metadata; any multiple of ``patch_size`` is accepted).
        patch_size (int): Patch side. Default: 14.
        in_channels (int): Image channels. Default: 3.
        embed_dims (int): Width. Default: 1024.
        depth (int): Number of blocks. Default: 32.
        num_heads (int): Attention heads. Default: 16.
        mlp_ratio (float): MLP hidden = ``int(embed_dims * mlp_ratio)``. Default: 4.625 (4736).
        qkv_bias (bool): Bias of ``qkv``. Default: True.
        window_size (int): Window side (tokens) of window blocks. Default: 24.
        global_att_blocks (Sequence[int]): Blocks with global attention. Default: (7, 15, 23, 31).
        pretrain_img_size (int): Size the ``pos_embed`` table was trained for; the table has
            ``(pretrain_img_size // patch_size) ** 2 + 1`` rows (row 0: unused CLS). Default: 336.
        rope_theta (float): RoPE base. Default: 10000.
        rope_pt_size (int | None): RoPE pre-training grid; None means ``window_size``.
        use_interp_rope (bool): Squeeze RoPE positions into ``rope_pt_size`` per axis: window blocks
            use window-local coordinates, global blocks the whole (actual) token grid.
            Default: True.
        drop_path_rate (float): Stochastic depth (mmcv ``DropPath``), linear from 0 to this over
            the blocks.
        norm_eps (float): LayerNorm epsilon. Default: 1e-5.
        with_cp (bool): Activation checkpointing of every block in training.
        frozen_stages (int): -1 trains everything; ``k >= 0`` freezes the patch embedding,
            ``pos_embed`` and ``ln_pre`` plus the first ``k`` blocks (kept in eval mode).
        init_cfg (dict | list | None): mmengine init config (e.g. ``Pretrained``).

    Forward:
        x (Tensor): ``(B, 3, H, W)`` normalised image, ``H`` and ``W`` multiples of ``patch_size``
        (ValueError otherwise).

        Returns ``tuple[Tensor]`` with one ``(B, embed_dims, H / patch_size, W / patch_size)``
        map.
    """

    #: timm-style preprocessing metadata of the pretrained weights (pixels scaled to [0, 1]).
    pretrained_cfg = dict(
        input_size=(3, 1008, 1008),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation='bilinear',
        patch_size=14,
    )

    def __init__(self,
                 img_size: int = 1008,
                 patch_size: int = 14,
                 in_channels: int = 3,
                 embed_dims: int = 1024,
                 depth: int = 32,
                 num_heads: int = 16,
                 mlp_ratio: float = 4.625,
                 qkv_bias: bool = True,
                 window_size: int = 24,
                 global_att_blocks: Sequence[int] = (7, 15, 23, 31),
                 pretrain_img_size: int = 336,
                 rope_theta: float = 10000.0,
                 rope_pt_size: Optional[int] = None,
                 use_interp_rope: bool = True,
                 drop_path_rate: float = 0.0,
                 norm_eps: float = 1e-5,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        global_att_blocks = tuple(int(i) for i in global_att_blocks)
        if any(i < 0 or i >= depth for i in global_att_blocks):
            raise ValueError(f'global_att_blocks {global_att_blocks} out of range for depth '
                             f'{depth}')
        if not -1 <= frozen_stages <= depth:
            raise ValueError(f'frozen_stages must be in [-1, {depth}], got {frozen_stages}')
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dims = embed_dims
        self.depth = depth
        self.window_size = window_size
        self.global_att_blocks = global_att_blocks
        self.frozen_stages = frozen_stages
        self.pretrain_grid = pretrain_img_size // patch_size
        self.channel_list = [embed_dims]

        self.patch_embed = _PatchEmbed(patch_size, in_channels, embed_dims, bias=False)
        # Row 0 belongs to the pre-training CLS token; it is kept only so checkpoints load as is.
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid**2 + 1, embed_dims))
        self.ln_pre = nn.LayerNorm(embed_dims, eps=norm_eps)

        rope_pt = window_size if rope_pt_size is None else rope_pt_size
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([
            SAM3ViTBlock(embed_dims,
                         num_heads,
                         mlp_ratio=mlp_ratio,
                         qkv_bias=qkv_bias,
                         drop_path=dpr[i],
                         window_size=0 if i in global_att_blocks else window_size,
                         use_rope=True,
                         rope_theta=rope_theta,
                         rope_pt_size=rope_pt,
                         rope_interp=use_interp_rope,
                         norm_eps=norm_eps,
                         with_cp=with_cp) for i in range(depth)
        ])
        self._init_parameters()
        self._freeze_stages()

    # ------------------------------------------------------------------ init / freezing
    def _init_parameters(self) -> None:
        """From-scratch init: trunc-normal(0.02) for ``pos_embed`` and Linear weights, zero
        biases, unit LayerNorms (Conv keeps PyTorch's default)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, self.ln_pre] + list(self.blocks[:self.frozen_stages])
        self.pos_embed.requires_grad_(False)
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    @property
    def num_layers(self) -> int:
        return self.depth

    def get_layer_id(self, param_name: str) -> int:
        """See :func:`get_vit_layer_id`."""
        return get_vit_layer_id(param_name, self.depth)

    # ------------------------------------------------------------------ forward
    def abs_pos_embed(self, grid_hw: Tuple[int, int]) -> Tensor:
        """Absolute position embedding ``(1, H, W, C)`` for a token grid.

        The ``P x P`` pre-training table (CLS row dropped) is repeated as tiles and cropped to
        ``(H, W)``: no interpolation, so a 72x72 grid sees the 24x24 table 3x3 times.
        """
        h, w = grid_hw
        p = self.pretrain_grid
        table = self.pos_embed[:, 1:].reshape(1, p, p, -1)
        if (h, w) != (p, p):
            table = table.permute(0, 3, 1, 2).tile(1, 1, h // p + 1, w // p + 1)[:, :, :h, :w]
            table = table.permute(0, 2, 3, 1)
        return table

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        if x.dim() != 4:
            raise ValueError(f'SAM3ViT expects a (B, C, H, W) batch, got shape {tuple(x.shape)}')
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f'SAM3ViT input size ({h}, {w}) must be a multiple of the patch '
                             f'size {self.patch_size}; pad or resize the image '
                             f'(nominal size {self.img_size})')
        x = self.patch_embed(x)
        x = x + self.abs_pos_embed((x.shape[1], x.shape[2]))
        x = self.ln_pre(x)
        for blk in self.blocks:
            x = blk(x)
        # Channels-last strides, as the official trunk returns them: the neck convs run faster so.
        return (x.permute(0, 3, 1, 2), )
