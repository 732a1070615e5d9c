"""SAM's mask decoder as used by SAM 3's tracker: two-way transformer, 1 + 3 mask tokens, IoU
head, object-score head, high-resolution skip features, stability-based single-mask choice.

Data flow for ``B`` prompts (each already paired with its image's features)::

    tokens = [obj_score_token; iou_token; mask_tokens (4)] ++ sparse prompt (B, N, C)
    src = image_embed (B, C, h, w) + dense prompt (B, C, h, w)
    TwoWayTransformer(src, dense_pe, tokens) -> tokens', src'
    up = GELU(ConvT(GELU(LN2d(ConvT(src') + feat_s1))) + feat_s0)       (B, C/8, 4h, 4w)
    masks[k] = hypernetwork_mlp_k(mask_token_k) . up                      (B, 4, 4h, 4w)
    iou_pred = sigmoid(MLP(iou_token))                                    (B, 4)
    object_score_logits = MLP(obj_score_token)                            (B, 1)

Output 0 is the single-mask token, 1..3 the multimask tokens. :meth:`SAMMaskDecoder.select`
returns outputs 1..3 for ``multimask_output=True``; otherwise output 0, or (in eval, with
``dynamic_multimask_via_stability``) the best-IoU multimask output where output 0 is unstable
(IoU of its ``> delta`` and ``> -delta`` areas below ``thresh``), with tensor ops only.
Parameter names equal Meta's ``tracker.sam_mask_decoder.*`` (``sam3/sam/mask_decoder.py``).

For clicks on an image already encoded, the upscaling can run *blocked*
(:meth:`SAMMaskDecoder.block_high_res`, once per image): a 2 x 2, stride-2 transposed
convolution maps every input pixel to its own 2 x 2 output block, i.e. it is one matrix
product per pixel, so both transposed convolutions, the skip additions, the channel
LayerNorm, the GELUs and the hypernetwork product run on ``(pixels, channels)`` matrices kept in
block order, with the skip features rearranged to that order once, and only the four output
masks are put back into raster order. Same function as the convolution path, without its
layout conversions.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..layers.mlp import SAM3MLP
from ..layers.sam_prompt_encoder import LayerNorm2d

__all__ = ['SAMMaskDecoder']


@MODELS.register_module()
class SAMMaskDecoder(nn.Module):
    """Mask decoder of SAM 2 / SAM 3's tracker.

    Args:
        embed_dims (int): Transformer channels ``C`` (SAM 3: 256).
        transformer (dict): :class:`~mmsam3.models.layers.TwoWayTransformer` config.
        num_multimask_outputs (int): Multimask tokens (3); one single-mask token is added.
        iou_head_depth (int), iou_head_hidden_dim (int): IoU MLP (3 layers, 256).
        use_high_res_features (bool): Add ``conv_s0`` / ``conv_s1`` projections of the 4x and
            2x levels into the upscaling path (SAM 3: True).
        iou_prediction_use_sigmoid (bool): Sigmoid on the IoU head (SAM 3: True).
        pred_obj_scores (bool), pred_obj_scores_mlp (bool): Object-score token and a 3-layer
            MLP head (SAM 3: both True); without them the object score is a constant 10.
        dynamic_multimask_via_stability (bool), dynamic_multimask_stability_delta (float),
        dynamic_multimask_stability_thresh (float): single-mask fallback (SAM 3's tracker:
            True, 0.05, 0.98).
        use_multimask_token_for_obj_ptr (bool): Kept for config parity with Meta (the video
            tracker's object pointer); it only changes ``sam_tokens``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 transformer: Optional[dict] = None,
                 num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256,
                 use_high_res_features: bool = True,
                 iou_prediction_use_sigmoid: bool = True,
                 pred_obj_scores: bool = True,
                 pred_obj_scores_mlp: bool = True,
                 dynamic_multimask_via_stability: bool = True,
                 dynamic_multimask_stability_delta: float = 0.05,
                 dynamic_multimask_stability_thresh: float = 0.98,
                 use_multimask_token_for_obj_ptr: bool = True):
        super().__init__()
        cfg = dict(type='TwoWayTransformer', depth=2, embed_dims=embed_dims, num_heads=8,
                   mlp_dims=2048)
        cfg.update(transformer or {})
        transformer = cfg
        self.transformer = MODELS.build(transformer)
        self.embed_dims = embed_dims
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, embed_dims)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, embed_dims)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, embed_dims)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(embed_dims, embed_dims // 4, kernel_size=2, stride=2),
            LayerNorm2d(embed_dims // 4),
            nn.GELU(),
            nn.ConvTranspose2d(embed_dims // 4, embed_dims // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(embed_dims, embed_dims // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(embed_dims, embed_dims // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            SAM3MLP(embed_dims, embed_dims, embed_dims // 8, 3)
            for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = SAM3MLP(embed_dims, iou_head_hidden_dim,
                                           self.num_mask_tokens, iou_head_depth)
        self.iou_prediction_use_sigmoid = iou_prediction_use_sigmoid
        if pred_obj_scores:
            self.pred_obj_score_head = (SAM3MLP(embed_dims, embed_dims, 1, 3)
                                        if pred_obj_scores_mlp else nn.Linear(embed_dims, 1))
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def project_high_res(self, feat_s0: Tensor, feat_s1: Tensor):
        """``conv_s0`` / ``conv_s1`` on the 4x / 2x tracker-neck levels (once per image)."""
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    def block_high_res(self, feat_s0: Tensor, feat_s1: Tensor) -> Tuple[Tensor, Tensor]:
        """The projected skip features in the blocked upscaling's order (once per image),
        each with the bias of the transposed convolution it is added to (so the per-click
        products need none): ``feat_s1 (B, C/4, 2h, 2w)`` -> ``(B, 4 h w, C/4)``, rows
        ``(i, j, di, dj)`` for pixel ``(2i + di, 2j + dj)``; ``feat_s0 (B, C/8, 4h, 4w)`` ->
        ``(B, 16 h w, C/8)``, rows ``(i, j, di, dj, ei, ej)`` for pixel
        ``(4i + 2di + ei, 4j + 2dj + ej)``. Made from the decoder's weights at the time: make
        them again after loading others."""
        dc1, _, _, dc2, _ = self.output_upscaling
        b, c1, h2, w2 = feat_s1.shape
        h, w = h2 // 2, w2 // 2
        s1 = feat_s1.reshape(b, c1, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1)
        c0 = feat_s0.shape[1]
        s0 = feat_s0.reshape(b, c0, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
        return (s0.reshape(b, 16 * h * w, c0) + dc2.bias.to(s0.dtype),
                s1.reshape(b, 4 * h * w, c1) + dc1.bias.to(s1.dtype))

    def _upscale_blocked(self, src: Tensor, size: Tuple[int, int], s0_blocks: Tensor,
                         s1_blocks: Tensor, hyper_in: Tensor) -> Tensor:
        """Masks ``(B, M, 4h, 4w)`` from the transformer's image tokens ``src (B, h w, C)``
        (module doc); ``hyper_in (B, M, C/8)``."""
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        b, (h, w), num = src.shape[0], size, hyper_in.shape[1]
        # ConvTranspose2d weight (C_in, C_out, 2, 2) -> rows (di, dj, out) of a linear map.
        # (the biases are in the blocks already: block_high_res)
        c1, c0 = dc1.out_channels, dc2.out_channels
        w1 = dc1.weight.permute(2, 3, 1, 0).reshape(4 * c1, -1)
        up = F.linear(src, w1).view(b, 4 * h * w, c1).add_(s1_blocks)
        up = act1(F.layer_norm(up, (c1, ), ln1.weight, ln1.bias, ln1.eps))
        w2 = dc2.weight.permute(2, 3, 1, 0).reshape(4 * c0, -1)
        up = act2(F.linear(up, w2).view(b, 16 * h * w, c0).add_(s0_blocks))
        masks = hyper_in @ up.transpose(1, 2)  # (B, M, 16 h w), columns in block order
        masks = masks.view(b, num, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return masks.reshape(b, num, 4 * h, 4 * w)

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor,
                      dense: Tensor,
                      high_res_features: Optional[Sequence[Tensor]] = None,
                      high_res_blocks: Optional[Sequence[Tensor]] = None) -> Dict[str, Tensor]:
        """All ``1 + num_multimask_outputs`` outputs.

        Args:
            image_embeddings (Tensor): ``(B, C, h, w)``, one per prompt.
            image_pe (Tensor): ``(1, C, h, w)`` dense position encoding.
            sparse (Tensor): ``(B, N, C)`` prompt tokens; dense ``(B, C, h, w)``.
            high_res_features: ``(feat_s0 (B, C/8, 4h, 4w), feat_s1 (B, C/4, 2h, 2w))``, already
                projected (:meth:`project_high_res`).
            high_res_blocks: the same in block order (:meth:`block_high_res`, batch B or 1):
                the blocked upscaling (module doc) runs instead of the convolutions.

        Returns:
            dict: ``masks (B, 4, 4h, 4w)`` logits, ``iou_pred (B, 4)``, ``mask_tokens (B, 4, C)``,
            ``object_score_logits (B, 1)``.
        """
        if self.pred_obj_scores:
            output_tokens = torch.cat(
                [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])
            s = 1
        else:
            output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
            s = 0
        bs = sparse.shape[0]
        output_tokens = output_tokens.unsqueeze(0).expand(bs, -1, -1)
        tokens = torch.cat((output_tokens, sparse.to(output_tokens.dtype)), dim=1)
        src = image_embeddings + dense
        pos_src = image_pe.expand(bs, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1:s + 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack([
            mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)
        ], dim=1)
        if high_res_blocks is not None and self.use_high_res_features:
            masks = self._upscale_blocked(src, (h, w), *high_res_blocks, hyper_in)
        else:
            src = src.transpose(1, 2).reshape(b, c, h, w)
            if not self.use_high_res_features:
                up = self.output_upscaling(src)
            else:
                dc1, ln1, act1, dc2, act2 = self.output_upscaling
                feat_s0, feat_s1 = high_res_features
                up = act1(ln1(dc1(src) + feat_s1))
                up = act2(dc2(up) + feat_s0)
            b, c, h, w = up.shape
            masks = (hyper_in @ up.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.iou_prediction_use_sigmoid:
            iou_pred = iou_pred.sigmoid()
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return dict(masks=masks, iou_pred=iou_pred, mask_tokens=mask_tokens_out,
                    object_score_logits=object_score_logits)

    def stability_scores(self, mask_logits: Tensor) -> Tensor:
        """IoU of the ``> delta`` and ``> -delta`` areas of ``(..., H, W)`` logits."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        area_i = torch.sum(flat > delta, dim=-1).float()
        area_u = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(area_u > 0, area_i / area_u.clamp(min=1), torch.ones_like(area_u))

    def select(self, masks: Tensor, iou_pred: Tensor, multimask_output: bool):
        """Pick the outputs: ``(masks (B, M, H, W), iou_pred (B, M))`` with M = 3 or 1."""
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:]
        if not (self.dynamic_multimask_via_stability and not self.training):
            return masks[:, 0:1], iou_pred[:, 0:1]
        multi_masks, multi_iou = masks[:, 1:], iou_pred[:, 1:]
        best = torch.argmax(multi_iou, dim=-1, keepdim=True)  # (B, 1)
        best_masks = torch.gather(
            multi_masks, 1, best[:, :, None, None].expand(-1, -1, *multi_masks.shape[-2:]))
        best_iou = torch.gather(multi_iou, 1, best)
        single_masks, single_iou = masks[:, 0:1], iou_pred[:, 0:1]
        is_stable = self.stability_scores(single_masks) >= \
            self.dynamic_multimask_stability_thresh  # (B, 1)
        return (torch.where(is_stable[..., None, None], single_masks, best_masks),
                torch.where(is_stable, single_iou, best_iou))

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor,
                multimask_output: bool = True,
                high_res_features: Optional[Sequence[Tensor]] = None,
                high_res_blocks: Optional[Sequence[Tensor]] = None) -> Dict[str, Tensor]:
        """:meth:`predict_masks` then :meth:`select`.

        Returns:
            dict: ``masks (B, M, 4h, 4w)``, ``iou_pred (B, M)``, ``object_score_logits (B, 1)``,
            ``sam_tokens`` (the video tracker's pointer tokens) and ``all_masks`` /
            ``all_iou_pred`` (the four outputs, for training losses).
        """
        out = self.predict_masks(image_embeddings, image_pe, sparse, dense, high_res_features,
                                 high_res_blocks)
        masks, iou_pred = self.select(out['masks'], out['iou_pred'], multimask_output)
        tokens = out['mask_tokens']
        sam_tokens = (tokens[:, 1:] if multimask_output and self.use_multimask_token_for_obj_ptr
                      else tokens[:, 0:1])
        return dict(masks=masks, iou_pred=iou_pred,
                    object_score_logits=out['object_score_logits'], sam_tokens=sam_tokens,
                    all_masks=out['masks'], all_iou_pred=out['iou_pred'])
