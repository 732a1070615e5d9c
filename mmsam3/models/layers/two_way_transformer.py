"""SAM's two-way transformer (the mask decoder's body), with Meta's parameter names.

Tokens (output tokens + prompt tokens, ``(B, N, C)``) and image features (``(B, C, h, w)``)
attend to each other ``depth`` times (:class:`TwoWayAttentionBlock`: token self-attention,
token -> image cross-attention, token MLP, image -> token cross-attention, each followed by a
post-norm), then a final token -> image attention. The cross-attentions project to
``C / attention_downsample_rate`` channels. Parameter names equal Meta's
``sam_mask_decoder.transformer.*`` (``sam3/sam/transformer.py``), so the official weights load by
prefix. :class:`SAMAttention` has separate ``q_proj`` / ``k_proj`` / ``v_proj`` (and an inner
width), so it cannot share :class:`~.attention.SAM3MultiheadAttention`'s fused ``in_proj_weight``; the
compute is the same ``F.scaled_dot_product_attention``.

Cross-attention between a few tokens and many image tokens (one click: 8 tokens against
72 x 72 = 5184 image tokens) spends its time projecting the image side. :class:`SAMAttention`
then moves the projections onto the few tokens (``fold_projections``): the scores
``(W_q x) . (W_k y)`` per head are ``x . (W_q_h^T W_k_h y)``, the key bias shifts every score of a
query equally (softmax ignores it), and the value / output projections commute with the
attention weights (each row sums to one). The image side is then multiplied once by
``heads x tokens`` columns instead of twice by ``C / downsample_rate``: half the arithmetic for
one click at SAM 3's size, the same function (float rounding apart).
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['SAMAttention', 'SAMMLPBlock', 'TwoWayAttentionBlock', 'TwoWayTransformer']


class SAMAttention(nn.Module):
    """Multi-head attention whose projections may narrow the width (``downsample_rate``).

    Args:
        embed_dims (int): Channels of queries (and, by default, keys / values).
        num_heads (int): Heads; must divide ``embed_dims // downsample_rate``.
        downsample_rate (int): Inner width is ``embed_dims // downsample_rate``.
        kv_in_dims (int, optional): Channels of keys / values (default ``embed_dims``).
        dropout (float): Dropout on the attention probabilities (training only).
        fold_projections (bool): project the few tokens instead of the many where that is
            cheaper (``heads x few < inner width``; see the module doc); never while
            tracing / exporting or with active dropout, where the plain path runs.

    Forward: ``q (B, Nq, C)``, ``k (B, Nk, C_kv)``, ``v (B, Nk, C_kv)`` -> ``(B, Nq, C)``.
    """

    def __init__(self, embed_dims: int, num_heads: int, downsample_rate: int = 1,
                 kv_in_dims: int = None, dropout: float = 0.0, fold_projections: bool = True):
        super().__init__()
        self.embed_dims = embed_dims
        self.kv_in_dims = kv_in_dims or embed_dims
        self.internal_dims = embed_dims // downsample_rate
        self.num_heads = num_heads
        if self.internal_dims % num_heads:
            raise ValueError(f'num_heads ({num_heads}) must divide the inner width '
                             f'({self.internal_dims})')
        self.q_proj = nn.Linear(embed_dims, self.internal_dims)
        self.k_proj = nn.Linear(self.kv_in_dims, self.internal_dims)
        self.v_proj = nn.Linear(self.kv_in_dims, self.internal_dims)
        self.out_proj = nn.Linear(self.internal_dims, embed_dims)
        self.dropout = dropout
        self.fold_projections = fold_projections

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _fold(self, num_q: int, num_k: int) -> str:
        """``'keys'`` (few queries), ``'queries'`` (few keys) or ``''`` (plain path)."""
        if not self.fold_projections or (self.training and self.dropout > 0):
            return ''
        if torch.jit.is_tracing() or torch.jit.is_scripting() or \
                torch.onnx.is_in_onnx_export():
            return ''
        if self.num_heads * num_q < self.internal_dims and num_k > self.internal_dims:
            return 'keys'
        if self.num_heads * num_k < self.internal_dims and num_q > self.internal_dims:
            return 'queries'
        return ''

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        fold = self._fold(q.shape[1], k.shape[1])
        if fold == 'keys':
            return self._few_queries(q, k, v)
        if fold == 'queries':
            return self._few_keys(q, k, v)
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))

    def _few_queries(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Few queries, many keys: ``W_k`` folded into the queries, ``W_v`` applied after the
        weighted sum of the raw values (the key bias drops out of the softmax)."""
        heads, dim = self.num_heads, self.internal_dims // self.num_heads
        b, nq, _ = q.shape
        qh = self._heads(self.q_proj(q))  # (B, H, Nq, d)
        w_k = self.k_proj.weight.view(heads, dim, -1)
        fused = torch.einsum('bhqd,hdc->bhqc', qh / math.sqrt(dim), w_k)
        # Scores as (keys, heads x queries): the image tokens are the rows of a plain matrix
        # product (no transposed copy of them), the softmax runs down the columns.
        scores = k @ fused.reshape(b, heads * nq, -1).transpose(1, 2)
        attn = torch.softmax(scores, dim=1)
        mixed = (attn.transpose(1, 2) @ v).view(b, heads, nq, -1)  # (B, H, Nq, C_kv)
        w_v = self.v_proj.weight.view(heads, dim, -1)
        out = torch.einsum('bhqc,hdc->bhqd', mixed, w_v) + self.v_proj.bias.view(heads, 1, dim)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, heads * dim))

    def _few_keys(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Many queries, few keys: ``W_q`` folded into the keys, ``W_o`` into the values."""
        heads, dim = self.num_heads, self.internal_dims // self.num_heads
        b, nq, _ = q.shape
        nk = k.shape[1]
        kh = self._heads(self.k_proj(k))  # (B, H, Nk, d)
        vh = self._heads(self.v_proj(v))
        w_q = self.q_proj.weight.view(heads, dim, -1)
        kh = kh / math.sqrt(dim)
        fused = torch.einsum('bhkd,hdc->bhkc', kh, w_q).reshape(b, heads * nk, -1)
        shift = torch.einsum('bhkd,hd->bhk', kh, self.q_proj.bias.view(heads, dim))
        # Scores as (heads x keys, queries): the softmax then runs across the few keys with
        # the many queries contiguous (a softmax over rows of a few elements is slow).
        scores = torch.baddbmm(shift.reshape(b, heads * nk, 1), fused, q.transpose(1, 2))
        attn = torch.softmax(scores.view(b, heads, nk, nq), dim=2)
        w_o = self.out_proj.weight.view(-1, heads, dim)
        mixed = torch.einsum('bhkd,ohd->bhko', vh, w_o).reshape(b, heads * nk, -1)
        return torch.baddbmm(self.out_proj.bias.view(1, 1, -1),
                             attn.view(b, heads * nk, nq).transpose(1, 2), mixed)


class SAMMLPBlock(nn.Module):
    """``lin2(act(lin1(x)))`` (Meta's ``MLPBlock`` names)."""

    def __init__(self, embed_dims: int, mlp_dims: int, act: type = nn.ReLU):
        super().__init__()
        self.lin1 = nn.Linear(embed_dims, mlp_dims)
        self.lin2 = nn.Linear(mlp_dims, embed_dims)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token -> image, token MLP, image -> token (post-norm each).

    ``skip_first_layer_pe``: the first block's self-attention sees the tokens without their
    position encoding and has no residual (SAM's design).
    """

    def __init__(self, embed_dims: int, num_heads: int, mlp_dims: int = 2048,
                 attention_downsample_rate: int = 2, skip_first_layer_pe: bool = False):
        super().__init__()
        self.self_attn = SAMAttention(embed_dims, num_heads)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.cross_attn_token_to_image = SAMAttention(
            embed_dims, num_heads, downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.mlp = SAMMLPBlock(embed_dims, mlp_dims, nn.ReLU)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.norm4 = nn.LayerNorm(embed_dims)
        self.cross_attn_image_to_token = SAMAttention(
            embed_dims, num_heads, downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor,
                key_pe: Tensor) -> Tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe  # both cross-attentions see the image tokens with their encoding
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k,
                                                                      keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, queries + query_pe, queries))
        return queries, keys


@MODELS.register_module()
class TwoWayTransformer(nn.Module):
    """SAM's two-way transformer.

    Args:
        depth (int): Number of :class:`TwoWayAttentionBlock` (SAM 3: 2).
        embed_dims (int): Channels (SAM 3: 256).
        num_heads (int): Heads (SAM 3: 8).
        mlp_dims (int): Hidden channels of the token MLP (SAM 3: 2048).
        attention_downsample_rate (int): Width divisor of the cross-attentions (2).

    Forward:
        image_embedding ``(B, C, h, w)``, image_pe ``(B, C, h, w)``, point_embedding
        ``(B, N, C)`` (the tokens, also their position encoding) ->
        ``(queries (B, N, C), keys (B, h*w, C))``.
    """

    def __init__(self, depth: int = 2, embed_dims: int = 256, num_heads: int = 8,
                 mlp_dims: int = 2048, attention_downsample_rate: int = 2):
        super().__init__()
        self.depth = depth
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.mlp_dims = mlp_dims
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embed_dims, num_heads, mlp_dims, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0)) for i in range(depth))
        self.final_attn_token_to_image = SAMAttention(
            embed_dims, num_heads, downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embed_dims)

    def forward(self, image_embedding: Tensor, image_pe: Tensor,
                point_embedding: Tensor) -> Tuple[Tensor, Tensor]:
        # (B, h w, C) rows, contiguous: one copy here instead of strided reads in every
        # addition, projection and LayerNorm over the image tokens below.
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe)
        q, k = queries + point_embedding, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
