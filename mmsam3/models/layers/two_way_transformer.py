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
"""
from typing import Tuple

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

    Forward: ``q (B, Nq, C)``, ``k (B, Nk, C_kv)``, ``v (B, Nk, C_kv)`` -> ``(B, Nq, C)``.
    """

    def __init__(self, embed_dims: int, num_heads: int, downsample_rate: int = 1,
                 kv_in_dims: int = None, dropout: float = 0.0):
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

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


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
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
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
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe)
        q, k = queries + point_embedding, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
