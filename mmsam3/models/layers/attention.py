"""Multi-head attention on ``F.scaled_dot_product_attention`` with ``nn.MultiheadAttention`` names.

SAM 3 uses ``torch.nn.MultiheadAttention`` after the towers and stores its text encoder's causal
self-attention the same way. Keeping those parameter names (``in_proj_weight`` / ``in_proj_bias``
/ ``out_proj.{weight,bias}``) lets a checkpoint load by a plain prefix map, while the compute goes
through SDPA (flash / memory-efficient kernels on GPU, plain MatMul + Softmax in ONNX). The ViT's
attention (fused ``qkv`` Linear + RoPE) has other names and lives in :mod:`.vit_block`.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['SAM3MultiheadAttention']


@MODELS.register_module()
class SAM3MultiheadAttention(nn.Module):
    """Multi-head attention with a fused ``[W_q; W_k; W_v]`` input projection.

    Args:
        embed_dims (int): Channels ``C`` of query, key and value.
        num_heads (int): Number of heads; ``C`` must be divisible by it.
        dropout (float): Dropout on the attention probabilities (training only).
        batch_first (bool): Layout of inputs and output: ``(B, L, C)`` when True, else
            ``(L, B, C)`` (the ``nn.MultiheadAttention`` default).
        bias (bool): Whether the projections have biases.
        causal (bool): Query position ``i`` attends to key positions ``<= i`` only (the text
            encoder's self-attention), on top of any other mask.

    Forward:
        query ``(Lq, B, C)``, key ``(Lk, B, C)``, value ``(Lk, B, C)`` (batch-first when
        ``batch_first``); ``key_padding_mask`` ``(B, Lk)`` bool, True = ignore that key;
        ``attn_mask`` either bool (True = ignore) or float additive, of shape ``(Lq, Lk)``,
        ``(B * num_heads, Lq, Lk)`` or ``(B, num_heads, Lq, Lk)``.
        Returns the attended output with the layout of ``query``. When ``query``, ``key`` and
        ``value`` are one tensor, the three projections run as one matmul (as in
        ``nn.MultiheadAttention``).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 dropout: float = 0.0,
                 batch_first: bool = False,
                 bias: bool = True,
                 causal: bool = False):
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.causal = causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dims)) if bias else None
        self.out_proj = nn.Linear(embed_dims, embed_dims, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self):
        # Same initialisation as nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        """``(B, L, C)`` -> ``(B, h, L, d)``."""
        bs, length = x.shape[:2]
        return x.view(bs, length, self.num_heads, self.head_dims).transpose(1, 2)

    def _project(self, x: Tensor, idx: int) -> Tensor:
        """Project ``(B, L, C)`` with the ``idx``-th third and split heads -> ``(B, h, L, d)``."""
        c = self.embed_dims
        w = self.in_proj_weight[idx * c:(idx + 1) * c]
        b = None if self.in_proj_bias is None else self.in_proj_bias[idx * c:(idx + 1) * c]
        return self._split_heads(F.linear(x, w, b))

    def _project_self(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """All three projections of one ``(B, L, C)`` input in one matmul."""
        bs, length = x.shape[:2]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(bs, length, 3, self.num_heads, self.head_dims).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def _merge_masks(self, attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor], bs: int,
                     len_q: int, len_k: int, q: Tensor) -> Optional[Tensor]:
        """Combine the masks into one broadcastable to ``(B, h, Lq, Lk)``: additive float in
        ``q``'s dtype, or boolean (True = may attend) when the causal mask is the only one."""
        dtype = q.dtype
        mask = None
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros(attn_mask.shape, dtype=dtype,
                                        device=attn_mask.device).masked_fill(
                                            attn_mask, float('-inf'))
            else:
                attn_mask = attn_mask.to(dtype)
            if attn_mask.dim() == 3:
                attn_mask = attn_mask.reshape(bs, self.num_heads, len_q, len_k)
            mask = attn_mask
        if key_padding_mask is not None:
            kpm = torch.zeros((bs, 1, 1, len_k), dtype=dtype, device=key_padding_mask.device)
            kpm = kpm.masked_fill(key_padding_mask.view(bs, 1, 1, len_k).bool(), float('-inf'))
            mask = kpm if mask is None else mask + kpm
        if self.causal:
            # Boolean (True = may attend) when alone: fits any q dtype (autocast) and keeps -inf
            # out of fp16. Built per call, so it follows the device and the lengths.
            allowed = torch.ones(len_q, len_k, dtype=torch.bool, device=q.device).tril()
            mask = allowed if mask is None else mask.masked_fill(~allowed, float('-inf'))
        return mask

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None) -> Tensor:
        self_attention = query is key and key is value
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        bs, len_q = query.shape[:2]
        len_k = key.shape[1]
        if self_attention:
            q, k, v = self._project_self(query)
        else:
            q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        mask = self._merge_masks(attn_mask, key_padding_mask, bs, len_q, len_k, q)
        out = F.scaled_dot_product_attention(q,
                                             k,
                                             v,
                                             attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(bs, len_q, self.embed_dims)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out
