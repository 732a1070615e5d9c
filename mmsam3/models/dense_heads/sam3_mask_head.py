"""SAM 3 segmentation head (``segmentation_head`` in the checkpoint).

1. The encoder memory cross-attends to the prompt tokens (``cross_attend_prompt`` on
   ``cross_attn_norm(memory)``, residual).
2. A pixel decoder upsamples it (nearest, x2 per stage) and adds the finer FPN levels, each stage
   followed by ``conv_layers.{i}`` 3x3 + ``norms.{i}`` GroupNorm(8) + ReLU.
3. ``instance_seg_head`` (1x1 conv) gives per-pixel embeddings; mask logits are the dot products
   with ``mask_predictor.mask_embed(queries)``; ``semantic_seg_head`` (1x1 conv) gives one
   semantic logit map per prompt.

The SAM 3 checkpoint has three pixel-decoder stages but only two FPN levels precede the encoder
level, so ``conv_layers.2`` / ``norms.2`` are kept (strict load) and never executed.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..layers.attention import SAM3MultiheadAttention
from ..layers.mlp import SAM3MLP

__all__ = ['SAM3PixelDecoder', 'SAM3MaskHead']


@MODELS.register_module()
class SAM3PixelDecoder(nn.Module):
    """Top-down FPN decoder: ``conv_layers.{i}`` + ``norms.{i}`` per upsampling stage.

    Args:
        hidden_dim (int): Channels of every level (256).
        num_upsampling_stages (int): Stages built (3 in SAM 3; only ``len(feats) - 1`` run).
        interpolation_mode (str): Upsampling mode ("nearest").

    Forward:
        feats: list of ``(B_i, C, H_i, W_i)``, finest first, coarsest (the start) last; batch
        sizes must broadcast (1 or B). Returns ``(B, C, H_0, W_0)``.
    """

    def __init__(self,
                 hidden_dim: int = 256,
                 num_upsampling_stages: int = 3,
                 interpolation_mode: str = 'nearest'):
        super().__init__()
        self.interpolation_mode = interpolation_mode
        self.conv_layers = nn.ModuleList(
            nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1) for _ in range(num_upsampling_stages))
        self.norms = nn.ModuleList(
            nn.GroupNorm(8, hidden_dim) for _ in range(num_upsampling_stages))

    def forward(self, feats: List[Tensor]) -> Tensor:
        out = feats[-1]
        for stage, feat in enumerate(reversed(feats[:-1])):
            out = feat + F.interpolate(out, size=feat.shape[-2:], mode=self.interpolation_mode)
            out = F.relu(self.norms[stage](self.conv_layers[stage](out)))
        return out


@MODELS.register_module()
class SAM3MaskHead(nn.Module):
    """Instance + semantic mask head of SAM 3.

    Args:
        d_model (int): Channels (256).
        num_heads (int): Heads of ``cross_attend_prompt`` (8).
        num_upsampling_stages (int): Pixel-decoder stages to build (3).
        interpolation_mode (str): Pixel-decoder upsampling mode.
        with_cp (bool): Activation checkpointing of the pixel decoder in training.

    Forward:
        mlvl_feats: FPN levels *finer* than the encoder map, finest first, each
        ``(B_img, C, H_i, W_i)`` (or already per prompt, ``(B, C, H_i, W_i)``);
        memory ``(HW, B, C)`` fusion-encoder output (sequence-first) of the ``feat_size``
        ``(H, W)`` map; queries ``(B, Q, C)`` last decoder layer (batch-first); prompt
        ``(S, B, C)``; prompt_mask ``(B, S)`` True = pad; img_ids ``(B,)`` long, image index of
        each prompt, used to gather FPN levels when ``B_img > 1`` (with ``B_img == 1`` the levels
        broadcast, as in the official head).

        Returns ``dict(pred_masks=(B, Q, H_0, W_0), semantic_seg=(B, 1, H_0, W_0))`` logits, at
        the finest level's resolution (stride 4 of the network input in SAM 3).
    """

    def __init__(self,
                 d_model: int = 256,
                 num_heads: int = 8,
                 num_upsampling_stages: int = 3,
                 interpolation_mode: str = 'nearest',
                 with_cp: bool = False):
        super().__init__()
        self.d_model = d_model
        self.with_cp = with_cp
        self.pixel_decoder = SAM3PixelDecoder(d_model, num_upsampling_stages, interpolation_mode)
        self.mask_predictor = nn.ModuleDict(dict(mask_embed=SAM3MLP(d_model, d_model, d_model, 3)))
        self.cross_attend_prompt = SAM3MultiheadAttention(d_model, num_heads, dropout=0.0)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.semantic_seg_head = nn.Conv2d(d_model, 1, kernel_size=1)
        self.instance_seg_head = nn.Conv2d(d_model, d_model, kernel_size=1)

    def forward(self,
                mlvl_feats: Sequence[Tensor],
                memory: Tensor,
                feat_size: Sequence[int],
                queries: Tensor,
                prompt: Tensor,
                prompt_mask: Optional[Tensor] = None,
                img_ids: Optional[Tensor] = None) -> Dict[str, Tensor]:
        bs = memory.shape[1]
        attended = self.cross_attend_prompt(self.cross_attn_norm(memory),
                                            prompt,
                                            prompt,
                                            key_padding_mask=prompt_mask)
        memory = memory + attended
        h, w = int(feat_size[0]), int(feat_size[1])
        enc_map = memory.permute(1, 2, 0).reshape(bs, self.d_model, h, w)

        feats = []
        for feat in mlvl_feats:
            if feat.shape[0] > 1 and img_ids is not None:
                feat = feat[img_ids.to(feat.device)]
            feats.append(feat)
        feats.append(enc_map)
        if self.with_cp and self.training and torch.is_grad_enabled():
            pixel_embed = cp.checkpoint(self.pixel_decoder, feats, use_reentrant=False)
        else:
            pixel_embed = self.pixel_decoder(feats)

        instance_embed = self.instance_seg_head(pixel_embed)
        mask_embed = self.mask_predictor['mask_embed'](queries)
        pred_masks = torch.einsum('bqc,bchw->bqhw', mask_embed, instance_embed)
        return dict(pred_masks=pred_masks, semantic_seg=self.semantic_seg_head(pixel_embed))
