"""SAM 3 dot-product scoring head (``dot_prod_scoring`` in the checkpoint).

The prompt tokens (text + geometry) go through a residual MLP with an output LayerNorm, are
mean-pooled over the valid tokens and projected (``prompt_proj``); each decoder output is projected
(``hs_proj``) and the class logit is their scaled dot product, clamped to ``[-12, 12]``.
"""
from typing import Optional

import torch
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..layers.mlp import SAM3MLP

__all__ = ['SAM3ScoringHead']


@MODELS.register_module()
class SAM3ScoringHead(nn.Module):
    """Query-vs-prompt dot-product logits.

    Args:
        embed_dims (int): Channels of queries and prompt tokens (256).
        d_proj (int): Projection channels (256); the logit scale is ``1 / sqrt(d_proj)``.
        mlp_hidden_dim (int): Hidden channels of ``prompt_mlp`` (2048).
        dropout (float): Dropout inside ``prompt_mlp`` (0.1).
        clamp_max_val (float, optional): Logits are clamped to ``[-v, v]`` (12); None = no clamp.

    Forward:
        hs ``(L, B, Q, C)`` decoder outputs (batch-first), prompt ``(S, B, C)``
        (sequence-first), prompt_mask ``(B, S)`` bool, True = padding.
        Returns logits ``(L, B, Q, 1)``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 d_proj: int = 256,
                 mlp_hidden_dim: int = 2048,
                 dropout: float = 0.1,
                 clamp_max_val: Optional[float] = 12.0):
        super().__init__()
        self.prompt_mlp = SAM3MLP(embed_dims,
                                  mlp_hidden_dim,
                                  embed_dims,
                                  2,
                                  dropout=dropout,
                                  residual=True,
                                  out_norm=True)
        self.prompt_proj = nn.Linear(embed_dims, d_proj)
        self.hs_proj = nn.Linear(embed_dims, d_proj)
        self.scale = d_proj**-0.5
        self.clamp_max_val = clamp_max_val

    @staticmethod
    def masked_mean(prompt: Tensor, prompt_mask: Optional[Tensor]) -> Tensor:
        """Mean over valid tokens: ``(S, B, C)``, ``(B, S)`` -> ``(B, C)``."""
        if prompt_mask is None:
            return prompt.mean(dim=0)
        valid = (~prompt_mask.bool()).to(prompt.dtype).transpose(0, 1)[..., None]  # (S, B, 1)
        count = valid.sum(dim=0).clamp(min=1.0)
        return (prompt * valid).sum(dim=0) / count

    def forward(self, hs: Tensor, prompt: Tensor, prompt_mask: Optional[Tensor]) -> Tensor:
        prompt = self.prompt_mlp(prompt)
        pooled = self.prompt_proj(self.masked_mean(prompt, prompt_mask))  # (B, D)
        scores = torch.matmul(self.hs_proj(hs), pooled.unsqueeze(-1)) * self.scale
        if self.clamp_max_val is not None:
            scores = scores.clamp(min=-self.clamp_max_val, max=self.clamp_max_val)
        return scores
