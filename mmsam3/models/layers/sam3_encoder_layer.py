"""Pre-norm transformer layer shared by SAM 3's fusion encoder and geometry encoder.

One layer = self-attention over the ``query`` tokens, cross-attention from them to a ``memory``
sequence, and a ReLU FFN; each sub-block is ``x = x + drop(block(norm(x)))``. Parameter names
follow the official checkpoint: ``self_attn.*``, ``cross_attn_image.*``, ``linear1``,
``linear2``, ``norm1``, ``norm2``, ``norm3``.
"""
from typing import Optional

import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

from .attention import SAM3MultiheadAttention

__all__ = ['SAM3EncoderLayer']


@MODELS.register_module()
class SAM3EncoderLayer(nn.Module):
    """Pre-norm self-attention + cross-attention + FFN layer.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Attention heads (both attentions).
        dim_feedforward (int): FFN hidden channels.
        dropout (float): Dropout on attention probabilities and on every residual branch.
        pos_at_self_attn (bool): Add ``query_pos`` to the self-attention queries and keys.
        pos_at_cross_attn_queries (bool): Add ``query_pos`` to the cross-attention queries.
        pos_at_cross_attn_keys (bool): Add ``memory_pos`` to the cross-attention keys.
        batch_first (bool): Layout of all sequence inputs/outputs, ``(B, L, C)`` if True else
            ``(L, B, C)``.

    Forward:
        query ``(Lq, B, C)``; memory ``(Lm, B, C)``; ``query_pos`` like query;
        ``memory_pos`` like memory; ``query_key_padding_mask`` ``(B, Lq)`` and
        ``memory_key_padding_mask`` ``(B, Lm)``, True = padding. Returns ``(Lq, B, C)``
        (batch-first variants when ``batch_first``).
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 dim_feedforward: int = 2048,
                 dropout: float = 0.1,
                 pos_at_self_attn: bool = True,
                 pos_at_cross_attn_queries: bool = False,
                 pos_at_cross_attn_keys: bool = False,
                 batch_first: bool = False):
        super().__init__()
        self.pos_at_self_attn = pos_at_self_attn
        self.pos_at_cross_attn_queries = pos_at_cross_attn_queries
        self.pos_at_cross_attn_keys = pos_at_cross_attn_keys
        self.self_attn = SAM3MultiheadAttention(embed_dims,
                                                num_heads,
                                                dropout=dropout,
                                                batch_first=batch_first)
        self.cross_attn_image = SAM3MultiheadAttention(embed_dims,
                                                       num_heads,
                                                       dropout=dropout,
                                                       batch_first=batch_first)
        self.linear1 = nn.Linear(embed_dims, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self,
                query: Tensor,
                memory: Tensor,
                query_pos: Optional[Tensor] = None,
                memory_pos: Optional[Tensor] = None,
                query_key_padding_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        query = self.forward_self_attn(query, query_pos, query_key_padding_mask)
        return self.forward_cross_ffn(query, memory, query_pos, memory_pos,
                                      memory_key_padding_mask)

    def forward_self_attn(self,
                          query: Tensor,
                          query_pos: Optional[Tensor] = None,
                          query_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """The self-attention sub-block alone (it never sees the ``memory``)."""
        x = self.norm1(query)
        qk = x + query_pos if (self.pos_at_self_attn and query_pos is not None) else x
        return query + self.dropout1(
            self.self_attn(qk, qk, x, key_padding_mask=query_key_padding_mask))

    def forward_cross_ffn(self,
                          query: Tensor,
                          memory: Tensor,
                          query_pos: Optional[Tensor] = None,
                          memory_pos: Optional[Tensor] = None,
                          memory_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """The cross-attention and FFN sub-blocks, after :meth:`forward_self_attn`."""
        x = self.norm2(query)
        q = x + query_pos if (self.pos_at_cross_attn_queries and query_pos is not None) else x
        k = (memory + memory_pos if
             (self.pos_at_cross_attn_keys and memory_pos is not None) else memory)
        query = query + self.dropout2(
            self.cross_attn_image(q, k, memory, key_padding_mask=memory_key_padding_mask))

        x = self.norm3(query)
        x = self.linear2(self.dropout(F.relu(self.linear1(x), inplace=True)))
        return query + self.dropout3(x)
