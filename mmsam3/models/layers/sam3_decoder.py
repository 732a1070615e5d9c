"""SAM 3 DETR decoder (``transformer.decoder`` in the checkpoint).

Post-norm layers over ``num_queries`` learned queries plus one presence token:

1. self-attention (queries + presence token, presence with zero position) -> ``norm2``;
2. cross-attention to the prompt tokens (text + geometry) -> ``catext_norm``;
3. cross-attention to the encoder memory with a box relative position bias (boxRPB, "log"
   mode; zero bias for the presence token) -> ``norm1``;
4. ReLU FFN (kept in fp32 under autocast) -> ``norm3``.

Reference boxes start at ``sigmoid(reference_points)`` and are refined after every layer with
``bbox_embed(norm(out))`` (DAB/DINO style: each layer's query position is
``ref_point_head(sine(ref))`` of the detached boxes). In training with DAC ("divide and conquer"
DETR) the queries are duplicated: the second half (one-to-many) skips self-attention but shares
every other op.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from .attention import SAM3MultiheadAttention
from .checkpoint import maybe_checkpoint
from .mlp import SAM3MLP
from .position_encoding import gen_sineembed_for_position

__all__ = ['SAM3DecoderLayer', 'SAM3Decoder']

# The official inverse sigmoid clamps to [1e-3, 1 - 1e-3]; mmdet's function with this eps is the
# same formula.
INV_SIGMOID_EPS = 1e-3


@MODELS.register_module()
class SAM3DecoderLayer(nn.Module):
    """One post-norm decoder layer (sequence-first).

    Args:
        embed_dims (int): Channels.
        num_heads (int): Heads of all three attentions.
        dim_feedforward (int): FFN hidden channels.
        dropout (float): Dropout on attention probabilities and residual branches.

    Forward:
        tgt ``(Q, B, C)``, query_pos ``(Q, B, C)``, memory / memory_pos ``(HW, B, C)``,
        prompt ``(S, B, C)``, prompt_mask ``(B, S)`` (True = pad), attn_bias
        ``(B, num_heads, Q, HW)`` additive (or None), memory_key_padding_mask ``(B, HW)``,
        presence ``(1, B, C)`` or None, dac: the second half of ``tgt`` skips self-attention.
        Returns ``(tgt (Q, B, C), presence (1, B, C) or None)``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 dim_feedforward: int = 2048,
                 dropout: float = 0.1):
        super().__init__()
        self.num_heads = num_heads
        self.cross_attn = SAM3MultiheadAttention(embed_dims, num_heads, dropout=dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.ca_text = SAM3MultiheadAttention(embed_dims, num_heads, dropout=dropout)
        self.catext_dropout = nn.Dropout(dropout)
        self.catext_norm = nn.LayerNorm(embed_dims)
        self.self_attn = SAM3MultiheadAttention(embed_dims, num_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.linear1 = nn.Linear(embed_dims, dim_feedforward)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, embed_dims)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(embed_dims)

    def forward(self,
                tgt: Tensor,
                query_pos: Tensor,
                memory: Tensor,
                memory_pos: Optional[Tensor],
                prompt: Tensor,
                prompt_mask: Optional[Tensor] = None,
                attn_bias: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None,
                presence: Optional[Tensor] = None,
                dac: bool = False):
        # 1. Self-attention; with DAC only the one-to-one half takes part.
        if dac:
            num_o2o = tgt.shape[0] // 2
            sa_tgt, sa_pos, o2m_tgt = tgt[:num_o2o], query_pos[:num_o2o], tgt[num_o2o:]
        else:
            sa_tgt, sa_pos = tgt, query_pos
        if presence is not None:
            zero_pos = torch.zeros_like(presence)
            sa_tgt = torch.cat([presence, sa_tgt], dim=0)
            sa_pos = torch.cat([zero_pos, sa_pos], dim=0)
            query_pos = torch.cat([zero_pos, query_pos], dim=0)
        qk = sa_tgt + sa_pos
        sa_tgt = sa_tgt + self.dropout2(self.self_attn(qk, qk, sa_tgt))
        tgt = torch.cat([sa_tgt, o2m_tgt], dim=0) if dac else sa_tgt
        tgt = self.norm2(tgt)

        # 2. Cross-attention to the prompt tokens.
        tgt2 = self.ca_text(tgt + query_pos, prompt, prompt, key_padding_mask=prompt_mask)
        tgt = self.catext_norm(tgt + self.catext_dropout(tgt2))

        # 3. Cross-attention to the image with the box relative position bias.
        if attn_bias is not None and presence is not None:
            attn_bias = torch.cat([attn_bias.new_zeros(attn_bias[:, :, :1].shape), attn_bias],
                                  dim=2)
        key = memory if memory_pos is None else memory + memory_pos
        tgt2 = self.cross_attn(tgt + query_pos,
                               key,
                               memory,
                               attn_mask=attn_bias,
                               key_padding_mask=memory_key_padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))

        # 4. FFN, kept out of autocast (the official layer runs it in fp32 under AMP).
        with torch.autocast(device_type=tgt.device.type, enabled=False):
            x = tgt.to(self.linear1.weight.dtype)
            tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(x), inplace=True)))
        tgt = self.norm3(tgt + self.dropout4(tgt2))

        if presence is not None:
            return tgt[1:], tgt[:1]
        return tgt, None


@MODELS.register_module()
class SAM3Decoder(nn.Module):
    """SAM 3 DETR decoder with iterative box refinement, boxRPB, presence token and DAC.

    Args:
        num_layers (int): Decoder layers (6).
        embed_dims (int): Channels (256).
        num_heads (int): Attention heads (8).
        dim_feedforward (int): FFN hidden channels (2048).
        dropout (float): Dropout (0.1).
        num_queries (int): One-to-one object queries (200).
        dac (bool): Duplicate the queries in training (one-to-many half, no self-attention).
        with_presence_token (bool): Add the presence token and its head.
        with_cp (bool): Activation checkpointing of layers and boxRPB MLPs in training.

    Forward:
        memory ``(HW, B, C)`` encoder output (sequence-first), memory_pos ``(HW, B, C)``,
        feat_size ``(H, W)`` of the memory map (row-major), prompt ``(S, B, C)``, prompt_mask
        ``(B, S)`` True = pad, optional memory_key_padding_mask ``(B, HW)``.

        Returns a dict, batch-first, ``Q' = 2 * num_queries`` in training with DAC (one-to-one
        first), else ``num_queries``:

        - ``hs`` ``(L, B, Q', C)``: ``norm`` of every layer's output;
        - ``references`` ``(L, B, Q', 4)``: the input boxes of each layer (cx, cy, w, h; entry 0 is
          ``sigmoid(reference_points)``, later ones keep their gradient);
        - ``pred_boxes`` ``(L, B, Q', 4)``: ``sigmoid(inverse_sigmoid(ref_l) + bbox_embed(hs_l))``;
        - ``presence_logits`` ``(L, B, 1)`` (None without presence token);
        - ``presence_feats`` ``(1, B, C)``: the last layer's presence token (None without).
    """

    def __init__(self,
                 num_layers: int = 6,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 dim_feedforward: int = 2048,
                 dropout: float = 0.1,
                 num_queries: int = 200,
                 dac: bool = True,
                 with_presence_token: bool = True,
                 with_cp: bool = False):
        super().__init__()
        self.num_layers = num_layers
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_queries = num_queries
        self.dac = dac
        self.with_cp = with_cp
        self.layers = nn.ModuleList(
            SAM3DecoderLayer(embed_dims, num_heads, dim_feedforward, dropout)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dims)
        self.bbox_embed = SAM3MLP(embed_dims, embed_dims, 4, 3)
        self.query_embed = nn.Embedding(num_queries, embed_dims)
        self.reference_points = nn.Embedding(num_queries, 4)
        self.boxRPB_embed_x = SAM3MLP(2, embed_dims, num_heads, 2)
        self.boxRPB_embed_y = SAM3MLP(2, embed_dims, num_heads, 2)
        self.ref_point_head = SAM3MLP(2 * embed_dims, embed_dims, embed_dims, 2)
        if with_presence_token:
            self.presence_token = nn.Embedding(1, embed_dims)
            self.presence_token_head = SAM3MLP(embed_dims, embed_dims, 1, 3)
            self.presence_token_out_norm = nn.LayerNorm(embed_dims)
        else:
            self.presence_token = None
        self._init_special()

    def _init_special(self):
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        nn.init.normal_(self.query_embed.weight)

    def init_weights(self):
        """Xavier-uniform on matrices except the box head, queries and reference points
        (what the official ``TransformerWrapper`` does)."""
        for name, p in self.named_parameters():
            if p.dim() > 1 and not any(k in name
                                       for k in ('bbox_embed', 'query_embed', 'reference_points')):
                nn.init.xavier_uniform_(p)

    def box_rpb(self, ref_boxes: Tensor, feat_size: Sequence[int]) -> Tensor:
        """Box relative position bias ("log" mode).

        Args:
            ref_boxes (Tensor): ``(Q, B, 4)`` normalised cx, cy, w, h.
            feat_size: ``(H, W)`` of the memory map.

        Returns:
            Tensor: ``(B, num_heads, Q, H * W)`` additive attention bias.
        """
        h, w = int(feat_size[0]), int(feat_size[1])
        xyxy = bbox_cxcywh_to_xyxy(ref_boxes).transpose(0, 1)  # (B, Q, 4)
        bs, nq = xyxy.shape[:2]
        coords_h = torch.arange(h, dtype=torch.float32, device=xyxy.device) / h
        coords_w = torch.arange(w, dtype=torch.float32, device=xyxy.device) / w
        deltas_y = coords_h.view(1, 1, h, 1) - xyxy[:, :, None, 1::2]  # (B, Q, H, 2)
        deltas_x = coords_w.view(1, 1, w, 1) - xyxy[:, :, None, 0::2]  # (B, Q, W, 2)

        def log_scale(d):
            d = d * 8
            return (torch.sign(d) * torch.log2(torch.abs(d) + 1.0) / math.log2(8)).to(xyxy.dtype)

        bias_x = maybe_checkpoint(self, self.boxRPB_embed_x, log_scale(deltas_x))  # (B, Q, W, h)
        bias_y = maybe_checkpoint(self, self.boxRPB_embed_y, log_scale(deltas_y))  # (B, Q, H, h)
        bias = bias_y[:, :, :, None, :] + bias_x[:, :, None, :, :]  # (B, Q, H, W, h)
        return bias.flatten(2, 3).permute(0, 3, 1, 2).contiguous()

    def predict_boxes(self, hs: Tensor, references: Tensor) -> Tensor:
        """``sigmoid(inverse_sigmoid(references) + bbox_embed(hs))``, any matching leading dims."""
        return (inverse_sigmoid(references, INV_SIGMOID_EPS) + self.bbox_embed(hs)).sigmoid()

    def forward(self,
                memory: Tensor,
                memory_pos: Optional[Tensor],
                feat_size: Sequence[int],
                prompt: Tensor,
                prompt_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
        bs = memory.shape[1]
        apply_dac = self.dac and self.training
        reps = 2 if apply_dac else 1
        tgt = self.query_embed.weight[:, None].repeat(reps, bs, 1)
        ref = self.reference_points.weight[:, None].repeat(reps, bs, 1).sigmoid()
        presence = None
        if self.presence_token is not None:
            presence = self.presence_token.weight[None].expand(1, bs, -1)

        hs, references, presence_logits = [], [ref], []
        output = tgt
        for idx, layer in enumerate(self.layers):
            query_sine = gen_sineembed_for_position(ref, self.embed_dims).to(ref.dtype)
            query_pos = self.ref_point_head(query_sine)
            attn_bias = self.box_rpb(ref, feat_size)
            output, presence = maybe_checkpoint(self,
                                                layer,
                                                output,
                                                query_pos,
                                                memory,
                                                memory_pos,
                                                prompt,
                                                prompt_mask=prompt_mask,
                                                attn_bias=attn_bias,
                                                memory_key_padding_mask=memory_key_padding_mask,
                                                presence=presence,
                                                dac=apply_dac)
            normed = self.norm(output)
            new_ref = (inverse_sigmoid(ref, INV_SIGMOID_EPS) + self.bbox_embed(normed)).sigmoid()
            # The next layer sees detached boxes; the stored ones keep their gradient
            # ("look forward twice").
            ref = new_ref.detach()
            if idx != self.num_layers - 1:
                references.append(new_ref)
            hs.append(normed)
            if presence is not None:
                # The official decoder calls a non-assigned ``clamp`` here (a no-op), so the
                # presence logits are NOT clamped; we reproduce that.
                logit = self.presence_token_head(self.presence_token_out_norm(presence))
                presence_logits.append(logit.squeeze(-1))  # (1, B)

        hs = torch.stack(hs).transpose(1, 2)  # (L, B, Q', C)
        references = torch.stack(references).transpose(1, 2)  # (L, B, Q', 4)
        return dict(hs=hs,
                    references=references,
                    pred_boxes=self.predict_boxes(hs, references),
                    presence_logits=(torch.stack(presence_logits).transpose(1, 2)
                                     if presence_logits else None),
                    presence_feats=presence)
