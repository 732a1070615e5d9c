"""SAM 3 exemplar (geometry) prompt encoder (``geometry_encoder`` in the checkpoint).

Each prompt box becomes one token::

    label_embed(label) + boxes_direct_project(cxcywh)
                       + boxes_pool_project(RoIAlign(img_pre_norm(features), box))
                       + boxes_pos_enc_project([sine(cy), sine(cx), h, w])

A learned CLS token is appended right after the last valid box of every prompt (sequences are
right-padded, so a prompt without boxes is just the CLS token). The sequence goes through
``final_proj`` + ``norm``, three pre-norm layers (self-attention among the tokens, then
cross-attention to the raw image tokens with their sine position on the keys, then FFN) and
``encode_norm``.

The ``points_*`` projections exist only so the official checkpoint loads strictly: the image
PCS path of SAM 3 never encodes point prompts, so they are frozen (``requires_grad=False``) and
DDP runs without touching them.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn
from torchvision.ops import roi_align

from .checkpoint import maybe_checkpoint
from .position_encoding import encode_box_cxcywh
from .sam3_encoder_layer import SAM3EncoderLayer

__all__ = ['SAM3GeometryEncoder']


@MODELS.register_module()
class SAM3GeometryEncoder(nn.Module):
    """Encode box exemplars (positive / negative) into a prompt token sequence.

    Args:
        embed_dims (int): Channels.
        num_layers (int): Pre-norm layers ``encode.{i}`` (3 in SAM 3).
        num_heads (int): Attention heads.
        dim_feedforward (int): FFN hidden channels.
        dropout (float): Dropout in the layers (0.1 in SAM 3).
        roi_size (int): RoIAlign output size; ``boxes_pool_project`` is a ``roi_size`` conv
            reducing it to 1x1.
        with_cp (bool): Activation checkpointing of each layer in training.

    Forward:
        boxes ``(N, B, 4)`` normalised cx, cy, w, h (sequence-first; ``N`` may be 0 or boxes
        None); box_mask ``(B, N)`` bool, True = padding, **right-padded**; box_labels
        ``(N, B)`` 1 positive / 0 negative; img_feats ``(HW, B, C)`` and img_pos ``(HW, B, C)``
        the row-major tokens of the ``feat_size = (H, W)`` map.
        Returns ``(tokens (N + 1, B, C), mask (B, N + 1))``; the CLS token of prompt ``b`` sits at
        index ``num_valid_boxes[b]``, padding (True) after it.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 dim_feedforward: int = 2048,
                 dropout: float = 0.1,
                 roi_size: int = 7,
                 with_cp: bool = False):
        super().__init__()
        self.embed_dims = embed_dims
        self.roi_size = roi_size
        self.with_cp = with_cp
        # 0 = negative, 1 = positive.
        self.label_embed = nn.Embedding(2, embed_dims)
        self.cls_embed = nn.Embedding(1, embed_dims)
        # Point prompts: unused by image PCS, kept for a strict checkpoint load and frozen.
        self.points_direct_project = nn.Linear(2, embed_dims)
        self.points_pool_project = nn.Linear(embed_dims, embed_dims)
        self.points_pos_enc_project = nn.Linear(embed_dims, embed_dims)
        for unused in (self.points_direct_project, self.points_pool_project,
                       self.points_pos_enc_project):
            unused.requires_grad_(False)
        self.boxes_direct_project = nn.Linear(4, embed_dims)
        self.boxes_pool_project = nn.Conv2d(embed_dims, embed_dims, roi_size)
        self.boxes_pos_enc_project = nn.Linear(embed_dims + 2, embed_dims)
        self.final_proj = nn.Linear(embed_dims, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.img_pre_norm = nn.LayerNorm(embed_dims)
        self.encode = nn.ModuleList(
            SAM3EncoderLayer(embed_dims=embed_dims,
                             num_heads=num_heads,
                             dim_feedforward=dim_feedforward,
                             dropout=dropout,
                             pos_at_self_attn=False,
                             pos_at_cross_attn_queries=False,
                             pos_at_cross_attn_keys=True,
                             batch_first=False) for _ in range(num_layers))
        self.encode_norm = nn.LayerNorm(embed_dims)

    def _pool_boxes(self, boxes: Tensor, img_feats: Tensor, feat_size: Sequence[int]) -> Tensor:
        """RoIAlign on the pre-normed map + 7x7 conv: ``(N, B, 4)`` -> ``(N, B, C)``."""
        num_boxes, bs = boxes.shape[:2]
        h, w = int(feat_size[0]), int(feat_size[1])
        feats = self.img_pre_norm(img_feats)  # (HW, B, C)
        feats = feats.permute(1, 2, 0).reshape(bs, self.embed_dims, h, w)
        scale = boxes.new_tensor([w, h, w, h])
        boxes_xyxy = (bbox_cxcywh_to_xyxy(boxes) * scale).float()
        # rois (B * N, 5) ordered batch-major: [batch index, x0, y0, x1, y1] in feature pixels.
        batch_idx = torch.arange(bs, device=boxes.device, dtype=boxes_xyxy.dtype)
        batch_idx = batch_idx.repeat_interleave(num_boxes)[:, None]
        rois = torch.cat([batch_idx, boxes_xyxy.transpose(0, 1).reshape(-1, 4)], dim=1)
        # RoIAlign in fp32 (the CPU kernel has no bf16; boxes need the precision anyway).
        pooled = roi_align(feats.float(),
                           rois,
                           self.roi_size,
                           spatial_scale=1.0,
                           sampling_ratio=-1,
                           aligned=False).to(feats.dtype)
        pooled = self.boxes_pool_project(pooled)  # (B * N, C, 1, 1)
        return pooled.view(bs, num_boxes, self.embed_dims).transpose(0, 1)

    def _encode_boxes(self, boxes: Tensor, box_labels: Tensor, img_feats: Tensor,
                      feat_size: Sequence[int]) -> Tensor:
        # Coordinates stay in their own (normally fp32) precision for pooling and sine encoding.
        embed = self.boxes_direct_project(boxes.to(self.boxes_direct_project.weight.dtype))
        if boxes.shape[0] > 0:
            embed = embed + self._pool_boxes(boxes, img_feats, feat_size)
        pos_enc = encode_box_cxcywh(boxes, self.embed_dims).to(embed.dtype)
        embed = embed + self.boxes_pos_enc_project(pos_enc)
        return self.label_embed(box_labels.long()) + embed

    def _append_cls(self, tokens: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Place the CLS token right after the valid tokens of each (right-padded) sequence."""
        length, bs, c = tokens.shape
        num_valid = (~mask).sum(dim=-1)  # (B,)
        seq = torch.cat([tokens, tokens.new_zeros(1, bs, c)], dim=0)
        cls = self.cls_embed.weight.view(1, 1, c).expand(1, bs, c).to(seq.dtype)
        seq = seq.scatter(0, num_valid.view(1, bs, 1).expand(1, bs, c), cls)
        positions = torch.arange(length + 1, device=mask.device)
        new_mask = positions[None, :] > num_valid[:, None]
        return seq, new_mask

    def forward(self, boxes: Optional[Tensor], box_mask: Optional[Tensor],
                box_labels: Optional[Tensor], img_feats: Tensor, img_pos: Optional[Tensor],
                feat_size: Sequence[int]) -> Tuple[Tensor, Tensor]:
        bs = img_feats.shape[1]
        device = img_feats.device
        if boxes is None:
            boxes = img_feats.new_zeros(0, bs, 4, dtype=torch.float32)
        num_boxes = boxes.shape[0]
        if box_mask is None:
            box_mask = torch.zeros(bs, num_boxes, dtype=torch.bool, device=device)
        if box_labels is None:
            box_labels = torch.ones(num_boxes, bs, dtype=torch.long, device=device)

        tokens = self._encode_boxes(boxes, box_labels, img_feats, feat_size)
        tokens, mask = self._append_cls(tokens, box_mask.bool())
        tokens = self.norm(self.final_proj(tokens))

        for layer in self.encode:
            tokens = maybe_checkpoint(self, layer, tokens, img_feats, memory_pos=img_pos,
                                      query_key_padding_mask=mask)
        return self.encode_norm(tokens), mask
