"""Importance of whole heads, MLP / FFN channels and residual channels, from teacher weights.

Magnitude criteria (no data needed, deterministic): a hidden unit matters as much as the
product of the norms of what writes it and what reads it; a head as much as its value rows
times its output-projection columns; a residual channel as much as the blocks write into it.
All functions take the teacher's state dict and return teacher indices, most important first.
"""
from typing import Dict, List

import torch
from torch import Tensor

__all__ = ['top_k', 'ffn_channels', 'vit_mlp_channels', 'head_order', 'residual_order']


def top_k(order: List[int], k: int) -> List[int]:
    """The first ``k`` of an importance order, sorted back into index order."""
    return sorted(order[:k])


def _rank(score: Tensor) -> List[int]:
    # Stable: ties keep index order, so a full keep is the identity.
    return torch.sort(score.float(), descending=True, stable=True).indices.tolist()


def ffn_channels(sd: Dict[str, Tensor], fc_in: str, fc_out: str) -> List[int]:
    """Hidden channels of ``fc_in -> act -> fc_out``: ``|W_in[h, :]| * |W_out[:, h]|``."""
    w_in, w_out = sd[fc_in + '.weight'], sd[fc_out + '.weight']
    return _rank(w_in.float().norm(dim=1) * w_out.float().norm(dim=0))


def vit_mlp_channels(sd: Dict[str, Tensor], block: int) -> List[int]:
    p = f'backbone.blocks.{block}.mlp.'
    return ffn_channels(sd, p + 'fc1', p + 'fc2')


def head_order(sd: Dict[str, Tensor], block: int, num_heads: int, head_dim: int) -> List[int]:
    """Heads of ViT block ``block``: ``|W_v(head)|_F * |W_proj[:, head]|_F``."""
    p = f'backbone.blocks.{block}.attn.'
    qkv, proj = sd[p + 'qkv.weight'].float(), sd[p + 'proj.weight'].float()
    dim = num_heads * head_dim
    v = qkv[2 * dim:3 * dim].reshape(num_heads, head_dim, -1)
    out = proj.reshape(proj.shape[0], num_heads, head_dim)
    return _rank(v.flatten(1).norm(dim=1) * out.permute(1, 0, 2).flatten(1).norm(dim=1))


def residual_order(sd: Dict[str, Tensor], depth: int) -> List[int]:
    """Residual channels of the ViT: the norm of what the patch embedding and every block's
    attention and MLP write into each channel."""
    score = sd['backbone.patch_embed.proj.weight'].float().flatten(1).norm(dim=1)
    for i in range(depth):
        p = f'backbone.blocks.{i}.'
        score = score + sd[p + 'attn.proj.weight'].float().norm(dim=1)
        score = score + sd[p + 'mlp.fc2.weight'].float().norm(dim=1)
    return _rank(score)
