"""SAM 3's text encoder: a CLIP-style causal pre-LN transformer on token ids + a linear resizer.

Parameter names equal the official ``backbone.language_backbone.*`` entries of ``sam3.pt``::

    encoder.token_embedding.weight            (vocab, width)
    encoder.positional_embedding              (context_length, width)
    encoder.text_projection                   (width, output_dim)   -- dead, see below
    encoder.transformer.resblocks.{i}.attn.in_proj_weight / in_proj_bias / out_proj.{weight,bias}
    encoder.transformer.resblocks.{i}.ln_1 / ln_2 / mlp.c_fc / mlp.c_proj
    encoder.ln_final
    resizer                                   (embed_dims, width)

Numerics follow the official model: additive causal mask, **no** key-padding mask (pad positions
attend to everything before them and produce features; consumers use the returned pad mask),
exact-erf GELU, final LayerNorm on every token, no pooling.
"""
from collections import OrderedDict
from typing import Tuple

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..layers.attention import SAM3MultiheadAttention
from ..layers.checkpoint import maybe_checkpoint

__all__ = ['SAM3TextEncoder']


class _ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``; ``(N, L, width)``."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, norm_eps: float):
        super().__init__()
        self.attn = SAM3MultiheadAttention(width, num_heads, batch_first=True, causal=True)
        self.ln_1 = nn.LayerNorm(width, eps=norm_eps)
        self.ln_2 = nn.LayerNorm(width, eps=norm_eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            OrderedDict([('c_fc', nn.Linear(width, hidden)), ('gelu', nn.GELU()),
                         ('c_proj', nn.Linear(hidden, width))]))

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h)
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    """Stack of residual blocks held in ``resblocks`` (official name); ``with_cp``
    checkpoints each block in training."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, norm_eps: float):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [_ResidualAttentionBlock(width, heads, mlp_ratio, norm_eps) for _ in range(layers)])
        self.with_cp = False

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = maybe_checkpoint(self, block, x)
        return x


class _TextTransformer(nn.Module):
    """Token ids ``(N, L)`` -> normalised token features ``(N, L, width)``."""

    def __init__(self, vocab_size: int, context_length: int, width: int, layers: int, heads: int,
                 mlp_ratio: float, output_dim: int, norm_eps: float):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = _Transformer(width, layers, heads, mlp_ratio, norm_eps)
        self.ln_final = nn.LayerNorm(width, eps=norm_eps)
        # Dead in SAM 3 (the official model multiplies a pooled vector by it, then discards the
        # result). Kept so the official checkpoint loads strictly, and frozen so that DDP runs
        # without touching it.
        self.text_projection = nn.Parameter(torch.empty(width, output_dim), requires_grad=False)

    def forward(self, token_ids: Tensor) -> Tensor:
        length = token_ids.shape[1]
        x = self.token_embedding(token_ids) + self.positional_embedding[:length]
        return self.ln_final(self.transformer(x))


@MODELS.register_module()
class SAM3TextEncoder(BaseModule):
    """SAM 3 text encoder (defaults: the official 24-layer, width-1024 model, 256 channels out).

    Args:
        embed_dims (int): Output channels (``resizer`` output). Default: 256.
        width (int): Transformer width. Default: 1024.
        heads (int): Attention heads. Default: 16.
        layers (int): Residual blocks. Default: 24.
        context_length (int): Maximum (and positional-table) length. Default: 32.
        vocab_size (int): Token vocabulary. Default: 49408.
        mlp_ratio (float): MLP hidden = ``int(width * mlp_ratio)``. Default: 4.
        output_dim (int): Columns of the dead (frozen) ``encoder.text_projection``. Default: 512.
        norm_eps (float): LayerNorm epsilon. Default: 1e-5.
        with_cp (bool): Activation checkpointing per block in training.
        init_cfg (dict | list | None): mmengine init config.

    Forward:
        token_ids (LongTensor): ``(N, L)`` ids from :class:`SAM3Tokenizer`, ``L <= context_length``,
        0 = padding.

        Returns ``(features, pad_mask)``: ``features`` ``(N, L, embed_dims)`` (batch first; the
        official model returns it sequence first) and ``pad_mask`` ``(N, L)`` bool, True where
        ``token_ids == 0``.

    ``causal = True``: a token's feature depends on the tokens up to it only, so the features
    of the first ``L'`` positions of ``token_ids[:, :L']`` are those of the full ids (what
    :meth:`SAM3.encode_texts` uses to skip trailing padding).

    Unlike the official code (``torch.empty`` left as is), ``positional_embedding`` and
    ``text_projection`` are initialised, so a model built without a checkpoint is finite. The
    from-scratch init is CLIP's: token embedding N(0, 0.02), positional N(0, 0.01), attention
    N(0, width^-0.5), output projections N(0, width^-0.5 (2 layers)^-0.5), ``c_fc``
    N(0, (2 width)^-0.5), zero biases.
    """

    causal = True

    def __init__(self,
                 embed_dims: int = 256,
                 width: int = 1024,
                 heads: int = 16,
                 layers: int = 24,
                 context_length: int = 32,
                 vocab_size: int = 49408,
                 mlp_ratio: float = 4.0,
                 output_dim: int = 512,
                 norm_eps: float = 1e-5,
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.width = width
        self.context_length = context_length
        self.encoder = _TextTransformer(vocab_size, context_length, width, layers, heads, mlp_ratio,
                                        output_dim, norm_eps)
        self.resizer = nn.Linear(width, embed_dims)
        self.with_cp = with_cp
        self._init_parameters()

    @property
    def with_cp(self) -> bool:
        return self.encoder.transformer.with_cp

    @with_cp.setter
    def with_cp(self, value: bool) -> None:
        self.encoder.transformer.with_cp = bool(value)

    def _init_parameters(self) -> None:
        enc = self.encoder
        layers = len(enc.transformer.resblocks)
        attn_std = self.width**-0.5
        proj_std = attn_std * (2 * layers)**-0.5
        fc_std = (2 * self.width)**-0.5
        nn.init.normal_(enc.token_embedding.weight, std=0.02)
        nn.init.normal_(enc.positional_embedding, std=0.01)
        for block in enc.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.zeros_(block.attn.in_proj_bias)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.out_proj.bias)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.zeros_(block.mlp.c_fc.bias)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            nn.init.zeros_(block.mlp.c_proj.bias)
        nn.init.normal_(enc.text_projection, std=attn_std)

    def forward(self, token_ids: Tensor) -> Tuple[Tensor, Tensor]:
        if token_ids.dim() != 2:
            raise ValueError(f'token_ids must be (N, L), got shape {tuple(token_ids.shape)}')
        if token_ids.shape[1] > self.context_length:
            raise ValueError(f'sequence length {token_ids.shape[1]} exceeds the context length '
                             f'{self.context_length}')
        token_ids = token_ids.long()
        features = self.resizer(self.encoder(token_ids))
        return features, token_ids == 0
