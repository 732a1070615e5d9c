"""SAM 3 segmentation head (``segmentation_head`` in the checkpoint).

1. The encoder memory cross-attends to the prompt tokens (``cross_attend_prompt`` on
   ``cross_attn_norm(memory)``, residual).
2. A pixel decoder upsamples it (nearest, x2 per stage) and adds the finer FPN levels, each stage
   followed by ``conv_layers.{i}`` 3x3 + ``norms.{i}`` GroupNorm(8) + ReLU.
3. ``instance_seg_head`` (1x1 conv) gives per-pixel embeddings; mask logits are the dot products
   with ``mask_predictor.mask_embed(queries)`` (computed with the 1x1 convolution applied to the
   query embeddings instead: the same linear map on Q vectors rather than on every pixel);
   ``semantic_seg_head`` (1x1 conv) gives one semantic logit map per prompt.

The SAM 3 checkpoint has three pixel-decoder stages but only two FPN levels precede the encoder
level, so ``conv_layers.2`` / ``norms.2`` are kept (strict load), never executed and frozen
(``requires_grad=False``, so DDP runs without touching them); ``num_feature_levels``, which the
detector sets from its neck, says how many stages run.

Several prompts on one image. A stage computes ``conv(feat + up(out))``; the convolution is
linear, so it equals ``conv(feat) + conv'(up(out))`` (``conv'`` without bias). ``conv(feat)``
(the *lateral term*) depends on the image only and is computed once per image
(:meth:`SAM3PixelDecoder.lateral_terms`); for a nearest x2 upsampling, ``conv'(up(out))`` is four
2x2 convolutions of ``out`` at the coarse resolution, one per output pixel phase, which is 4/9 of
the 3x3 convolution's work at the fine one. The mask head takes this path when its caller hands
it the lateral terms, or by itself when it has at least two prompts per image and no gradients
are needed (not while exporting a graph); the results are those of the direct path up to
rounding.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..layers.attention import SAM3MultiheadAttention
from ..layers.checkpoint import maybe_checkpoint
from ..layers.mlp import SAM3MLP

__all__ = ['SAM3PixelDecoder', 'SAM3MaskHead']


@MODELS.register_module()
class SAM3PixelDecoder(nn.Module):
    """Top-down FPN decoder: ``conv_layers.{i}`` + ``norms.{i}`` per upsampling stage.

    Args:
        embed_dims (int): Channels of every level (256).
        num_upsampling_stages (int): Stages built (3 in SAM 3; only ``len(feats) - 1`` run).
        interpolation_mode (str): Upsampling mode ("nearest").
        num_feature_levels (int, optional): Length of the ``feats`` it will be given; the
            stages from ``num_feature_levels - 1`` on never run and are frozen. None: every
            stage runs (``num_upsampling_stages + 1`` levels).

    Forward:
        feats: list of ``(B_i, C, H_i, W_i)``, finest first, coarsest (the start) last; batch
        sizes must broadcast (1 or B). ``laterals`` (optional): :meth:`lateral_terms` of
        ``feats[:-1]``; then only ``feats[-1]`` is read (module doc). Returns
        ``(B, C, H_0, W_0)``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_upsampling_stages: int = 3,
                 interpolation_mode: str = 'nearest',
                 num_feature_levels: Optional[int] = None):
        super().__init__()
        if num_feature_levels is None:
            num_feature_levels = num_upsampling_stages + 1
        if not 1 <= num_feature_levels <= num_upsampling_stages + 1:
            raise ValueError(f'num_feature_levels must be in [1, {num_upsampling_stages + 1}] '
                             f'(num_upsampling_stages + 1), got {num_feature_levels}')
        self.interpolation_mode = interpolation_mode
        self.num_feature_levels = num_feature_levels
        self.conv_layers = nn.ModuleList(
            nn.Conv2d(embed_dims, embed_dims, 3, 1, 1) for _ in range(num_upsampling_stages))
        self.norms = nn.ModuleList(
            nn.GroupNorm(8, embed_dims) for _ in range(num_upsampling_stages))
        for stage in range(num_feature_levels - 1, num_upsampling_stages):
            self.conv_layers[stage].requires_grad_(False)
            self.norms[stage].requires_grad_(False)

    def lateral_terms(self, feats: Sequence[Tensor]) -> List[Tensor]:
        """``conv_layers[stage](feat)`` of the levels finer than the start, in stage order.

        Args:
            feats: the finer levels, finest first (``feats[:-1]`` of :meth:`forward`).
        """
        return [self.conv_layers[stage](feat) for stage, feat in enumerate(reversed(feats))]

    def _add_conv_of_upsampled(self, stage: int, lateral: Tensor, x: Tensor) -> Tensor:
        """``lateral`` + ``conv_layers[stage]`` without bias on ``x`` upsampled to the size of
        ``lateral`` (whose batch broadcasts over ``x``'s)."""
        conv = self.conv_layers[stage]
        h, w = x.shape[-2:]
        size = tuple(lateral.shape[-2:])
        if self.interpolation_mode != 'nearest' or size != (2 * h, 2 * w):
            return lateral + F.conv2d(F.interpolate(x, size=size, mode=self.interpolation_mode),
                                      conv.weight, None, conv.stride, conv.padding)
        # Output pixel (2i + a, 2j + b) reads coarse rows {i - 1, i} (a = 0) or {i, i + 1}
        # (a = 1); the 3x3 taps falling on the same coarse pixel add up to a 2x2 kernel.
        weight = conv.weight
        taps = weight.new_tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])  # (a, 2, 3)
        kernel = torch.einsum('apu,oiuv,bqv->aboipq', taps, weight, taps)
        c_out = weight.shape[0]
        y = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel.reshape(4 * c_out, weight.shape[1], 2, 2))
        y = y.unflatten(1, (2, 2, c_out))  # (B, a, b, C, h + 1, w + 1)
        bs = max(x.shape[0], lateral.shape[0])
        out = y.new_empty((bs, ) + tuple(lateral.shape[1:]))
        out.copy_(lateral)  # broadcasts over the prompts
        phases = out.view(bs, c_out, h, 2, w, 2)
        for a in (0, 1):
            for b in (0, 1):
                phases[:, :, :, a, :, b] += y[:, a, b, :, a:a + h, b:b + w]
        return out

    def forward(self, feats: List[Tensor], laterals: Optional[Sequence[Tensor]] = None) -> Tensor:
        out = feats[-1]
        if laterals is not None:
            for stage, lateral in enumerate(laterals):
                out = F.relu(self.norms[stage](self._add_conv_of_upsampled(stage, lateral, out)))
            return out
        for stage, feat in enumerate(reversed(feats[:-1])):
            out = feat + F.interpolate(out, size=feat.shape[-2:], mode=self.interpolation_mode)
            out = F.relu(self.norms[stage](self.conv_layers[stage](out)))
        return out


@MODELS.register_module()
class SAM3MaskHead(nn.Module):
    """Instance + semantic mask head of SAM 3.

    Args:
        embed_dims (int): Channels (256).
        num_heads (int): Heads of ``cross_attend_prompt`` (8).
        num_upsampling_stages (int): Pixel-decoder stages to build (3).
        interpolation_mode (str): Pixel-decoder upsampling mode.
        with_cp (bool): Activation checkpointing of the pixel decoder in training.
        num_feature_levels (int): Levels the pixel decoder is fed: the ``mlvl_feats`` plus the
            encoder map (3 in SAM 3; the detector sets it from its neck's ``num_outs``). The
            stages beyond them are frozen (module doc).

    Forward:
        mlvl_feats: FPN levels *finer* than the encoder map, finest first, each
        ``(B_img, C, H_i, W_i)`` (or already per prompt, ``(B, C, H_i, W_i)``);
        memory ``(HW, B, C)`` fusion-encoder output (sequence-first) of the ``feat_size``
        ``(H, W)`` map; queries ``(B, Q, C)`` last decoder layer (batch-first); prompt
        ``(S, B, C)``; prompt_mask ``(B, S)`` True = pad; img_ids ``(B,)`` long, image index of
        each prompt, used to gather FPN levels when ``B_img > 1`` (with ``B_img == 1`` the levels
        broadcast, as in the official head); pixel_laterals (optional) the pixel decoder's
        :meth:`~SAM3PixelDecoder.lateral_terms` of ``mlvl_feats``, kept by a caller that
        answers many prompts on one image.

        Returns ``dict(pred_masks=(B, Q, H_0, W_0), semantic_seg=(B, 1, H_0, W_0))`` logits, at
        the finest level's resolution (stride 4 of the network input in SAM 3).
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_upsampling_stages: int = 3,
                 interpolation_mode: str = 'nearest',
                 with_cp: bool = False,
                 num_feature_levels: int = 3):
        super().__init__()
        self.embed_dims = embed_dims
        self.with_cp = with_cp
        self.pixel_decoder = SAM3PixelDecoder(embed_dims, num_upsampling_stages, interpolation_mode,
                                              num_feature_levels)
        self.mask_predictor = nn.ModuleDict(
            dict(mask_embed=SAM3MLP(embed_dims, embed_dims, embed_dims, 3)))
        self.cross_attend_prompt = SAM3MultiheadAttention(embed_dims, num_heads, dropout=0.0)
        self.cross_attn_norm = nn.LayerNorm(embed_dims)
        self.semantic_seg_head = nn.Conv2d(embed_dims, 1, kernel_size=1)
        self.instance_seg_head = nn.Conv2d(embed_dims, embed_dims, kernel_size=1)

    @staticmethod
    def _shares_image_terms(mlvl_feats: Sequence[Tensor], num_prompts: int) -> bool:
        """Whether to compute the pixel decoder's lateral terms once per image (module doc):
        at least two prompts per image, inference, and not tracing a graph (whose prompt
        count is dynamic)."""
        if not mlvl_feats or torch.is_grad_enabled():
            return False
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return False
        return num_prompts >= 2 * mlvl_feats[0].shape[0]

    def forward(self,
                mlvl_feats: Sequence[Tensor],
                memory: Tensor,
                feat_size: Sequence[int],
                queries: Tensor,
                prompt: Tensor,
                prompt_mask: Optional[Tensor] = None,
                img_ids: Optional[Tensor] = None,
                pixel_laterals: Optional[Sequence[Tensor]] = None) -> Dict[str, Tensor]:
        if len(mlvl_feats) + 1 != self.pixel_decoder.num_feature_levels:
            raise ValueError(
                f'SAM3MaskHead was built for {self.pixel_decoder.num_feature_levels} feature '
                f'levels but got {len(mlvl_feats)} + the encoder map; set its '
                f'num_feature_levels to the number of levels the neck returns')
        bs = memory.shape[1]
        attended = self.cross_attend_prompt(self.cross_attn_norm(memory),
                                            prompt,
                                            prompt,
                                            key_padding_mask=prompt_mask)
        memory = memory + attended
        h, w = int(feat_size[0]), int(feat_size[1])
        enc_map = memory.permute(1, 2, 0).reshape(bs, self.embed_dims, h, w)

        def per_prompt(feat):
            if feat.shape[0] > 1 and img_ids is not None:
                return feat[img_ids.to(feat.device)]
            return feat

        if pixel_laterals is None and self._shares_image_terms(mlvl_feats, bs):
            pixel_laterals = self.pixel_decoder.lateral_terms(mlvl_feats)
        if pixel_laterals is not None:
            pixel_embed = maybe_checkpoint(self, self.pixel_decoder, [enc_map],
                                           [per_prompt(t) for t in pixel_laterals])
        else:
            feats = [per_prompt(feat) for feat in mlvl_feats] + [enc_map]
            pixel_embed = maybe_checkpoint(self, self.pixel_decoder, feats)

        mask_embed = self.mask_predictor['mask_embed'](queries)
        # mask = embed . (W pixel + b) = (embed W) . pixel + embed . b: the 1x1 convolution
        # ``instance_seg_head`` moves onto the Q query vectors instead of every pixel.
        conv = self.instance_seg_head
        query_side = mask_embed @ conv.weight.flatten(1).to(mask_embed.dtype)
        offset = mask_embed @ conv.bias.to(mask_embed.dtype)
        pred_masks = torch.einsum('bqc,bchw->bqhw', query_side.to(pixel_embed.dtype),
                                  pixel_embed) + offset[..., None, None].to(pixel_embed.dtype)
        return dict(pred_masks=pred_masks, semantic_seg=self.semantic_seg_head(pixel_embed))
