"""The MobileCLIP-style text encoder of SAM 3 LiteText (transformers ``Sam3LiteTextModel``).

Same interface as :class:`SAM3TextEncoder` (token ids in, ``(features, pad_mask)`` out), so a
config swaps it in with ``text_encoder=dict(type='SAM3LiteTextEncoder', ...)``; see
``configs/_base_/models/sam3_vit-l_litetext.py``. Parameter names under ``encoder.`` equal the
transformers checkpoint's ``text_encoder.*`` entries and ``resizer`` is its top-level
``text_projection``, so ``tools/model_converters/sam3_to_mmsam3.py`` converts by prefix.

Layers (``num_layers`` of them): with ``use_repmixer_blocks`` the first and the last are RepMixer
blocks (depthwise ``1 x k`` convolutions over the sequence with batch norms and layer scale, then
a convolutional feed-forward), the others pre-LN transformer layers with **bidirectional**
attention in which padding keys are masked. Then a final LayerNorm and ``resizer`` to
``embed_dims``. Unlike SAM 3's causal CLIP encoder the padding tokens take part in the convolutions,
so their id matters: positions marked as padding are given ``pad_token_id`` (transformers'
processor pads with ``<|endoftext|>``, 49407) before the embedding. The positional table has
``max_position_embeddings`` rows and is bilinearly resized to the sequence length when they
differ, as transformers does.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

__all__ = ['SAM3LiteTextEncoder']


class _PositionEmbedding(nn.Module):
    """``position_embedding`` ``(1, 1, P, C)``; ``forward(L)`` -> ``(1, L, C)``."""

    def __init__(self, num_positions: int, embed_dims: int):
        super().__init__()
        self.position_embedding = nn.Parameter(torch.empty(1, 1, num_positions, embed_dims))
        nn.init.normal_(self.position_embedding, std=embed_dims**-0.5)

    def forward(self, length: int) -> Tensor:
        table = self.position_embedding
        if length != table.shape[2]:
            table = F.interpolate(table, size=(length, table.shape[-1]), mode='bilinear')
        return table.reshape(1, length, -1)


class _Embeddings(nn.Module):
    """Token + positional embedding: ids ``(N, L)`` -> ``(N, L, C)``."""

    def __init__(self, vocab_size: int, num_positions: int, embed_dims: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, embed_dims)
        self.position_embedding = _PositionEmbedding(num_positions, embed_dims)

    def forward(self, token_ids: Tensor) -> Tensor:
        x = self.token_embedding(token_ids)
        return x + self.position_embedding(token_ids.shape[1]).to(x.dtype)


class _SelfAttention(nn.Module):
    """Bidirectional multi-head attention with ``q/k/v/out_proj``; ``key_valid`` ``(N, L)``."""

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor, key_valid: Tensor) -> Tensor:
        n, length, dims = x.shape

        def heads(t):
            return t.view(n, length, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid[:, None, None, :])
        return self.out_proj(out.transpose(1, 2).reshape(n, length, dims))


class _MLP(nn.Module):
    """``fc2(GELU(fc1(x)))`` with Linear (``conv=False``) or 1x1 Conv2d layers."""

    def __init__(self, embed_dims: int, hidden_dims: int, conv: bool = False):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.fc1 = layer(embed_dims, hidden_dims)
        self.fc2 = layer(hidden_dims, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _TransformerLayer(nn.Module):
    """Pre-LN: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``; ``(N, L, C)``."""

    def __init__(self, embed_dims: int, num_heads: int, hidden_dims: int, norm_eps: float):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.self_attn = _SelfAttention(embed_dims, num_heads)
        self.layer_norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = _MLP(embed_dims, hidden_dims)

    def forward(self, x: Tensor, key_valid: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x), key_valid)
        return x + self.mlp(self.layer_norm2(x))


def _depthwise_1xk(embed_dims: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(embed_dims, embed_dims, (1, kernel_size), padding=(0, kernel_size // 2),
                     groups=embed_dims, bias=False)


class _MobileOneBranch(nn.Module):
    """``bn_conv(dwconv(x)) + bn_skip(x)`` on ``(N, C, 1, L)``."""

    def __init__(self, embed_dims: int, kernel_size: int):
        super().__init__()
        self.batchnorm_skip = nn.BatchNorm2d(embed_dims)
        self.conv = _depthwise_1xk(embed_dims, kernel_size)
        self.batchnorm_conv = nn.BatchNorm2d(embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.batchnorm_conv(self.conv(x)) + self.batchnorm_skip(x)


class _RepMixer(nn.Module):
    """Token mixer: ``x + layer_scale * (mixer(x) - reference_batchnorm(x))``."""

    def __init__(self, embed_dims: int, kernel_size: int, layer_scale_init: float):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.full((embed_dims, 1, 1), layer_scale_init))
        self.reference_batchnorm = nn.BatchNorm2d(embed_dims)
        self.mixer = _MobileOneBranch(embed_dims, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layer_scale * (self.mixer(x) - self.reference_batchnorm(x))


class _ConvFeedForward(nn.Module):
    """``mlp(depthwise_batchnorm(depthwise_conv(x)))`` with a 1x1-conv MLP."""

    def __init__(self, embed_dims: int, hidden_dims: int, kernel_size: int):
        super().__init__()
        self.depthwise_conv = _depthwise_1xk(embed_dims, kernel_size)
        self.depthwise_batchnorm = nn.BatchNorm2d(embed_dims)
        self.mlp = _MLP(embed_dims, hidden_dims, conv=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.depthwise_batchnorm(self.depthwise_conv(x)))


class _RepMixerBlock(nn.Module):
    """RepMixer then ``x + layer_scale * conv_feed_forward(x)``; ``(N, L, C)`` in and out."""

    def __init__(self, embed_dims: int, hidden_dims: int, kernel_size: int,
                 layer_scale_init: float):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.full((embed_dims, 1, 1), layer_scale_init))
        self.token_mixer = _RepMixer(embed_dims, kernel_size, layer_scale_init)
        self.conv_feed_forward = _ConvFeedForward(embed_dims, hidden_dims, kernel_size)

    def forward(self, x: Tensor, key_valid: Tensor) -> Tensor:
        del key_valid  # convolutions see every position, padding included
        x = x.transpose(1, 2).unsqueeze(2)
        x = self.token_mixer(x)
        x = x + self.layer_scale * self.conv_feed_forward(x)
        return x.squeeze(2).transpose(1, 2)


class _LiteTextTransformer(nn.Module):
    """Ids ``(N, L)`` + key validity ``(N, L)`` -> normalised features ``(N, L, C)``."""

    def __init__(self, vocab_size, num_positions, embed_dims, num_layers, num_heads, hidden_dims,
                 projection_dims, norm_eps, use_repmixer_blocks, kernel_size, layer_scale_init):
        super().__init__()
        self.embeddings = _Embeddings(vocab_size, num_positions, embed_dims)
        repmixer_at = {0, num_layers - 1} if use_repmixer_blocks else set()
        self.layers = nn.ModuleList([
            _RepMixerBlock(embed_dims, hidden_dims, kernel_size, layer_scale_init)
            if i in repmixer_at else _TransformerLayer(embed_dims, num_heads, hidden_dims,
                                                       norm_eps) for i in range(num_layers)
        ])
        self.final_layer_norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        # The pooled CLIP projection: computed and discarded by transformers' SAM 3 LiteText,
        # kept (frozen) so its checkpoint loads strictly.
        self.projection = nn.Linear(embed_dims, projection_dims, bias=False)
        self.projection.weight.requires_grad_(False)

    def forward(self, token_ids: Tensor, key_valid: Tensor) -> Tensor:
        x = self.embeddings(token_ids)
        for layer in self.layers:
            x = layer(x, key_valid)
        return self.final_layer_norm(x)


@MODELS.register_module()
class SAM3LiteTextEncoder(BaseModule):
    """SAM 3 LiteText text encoder (defaults: transformers' ``Sam3LiteTextTextConfig``).

    Args:
        embed_dims (int): Output channels (``resizer``), as :class:`SAM3TextEncoder`. Default: 256.
        width (int): Encoder width. Default: 512.
        layers (int): Layers, RepMixer blocks included. Default: 12.
        heads (int): Attention heads. Default: 8.
        hidden_dims (int): MLP hidden width. Default: 2048.
        context_length (int): Longest accepted sequence (the tokenizer's). Default: 32.
        max_position_embeddings (int): Rows of the positional table. Default: 77.
        vocab_size (int): Token vocabulary. Default: 49408.
        projection_dims (int): Output of the dead pooled ``projection``. Default: 512.
        norm_eps (float): LayerNorm epsilon. Default: 1e-5.
        use_repmixer_blocks (bool): First and last layers are RepMixer blocks. Default: True.
        repmixer_kernel_size (int): Depthwise kernel length. Default: 11.
        layer_scale_init (float): Initial layer scale of the RepMixer blocks. Default: 1e-5.
        pad_token_id (int): Id given to padding positions before the embedding. Default: 49407.
        init_cfg (dict | list | None): mmengine init config.

    Forward:
        token_ids (LongTensor): ``(N, L)`` from :class:`SAM3Tokenizer`, 0 = padding,
        ``L <= context_length``.

        Returns ``(features, pad_mask)``: ``(N, L, embed_dims)`` and ``(N, L)`` bool, True where
        ``token_ids == 0``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 width: int = 512,
                 layers: int = 12,
                 heads: int = 8,
                 hidden_dims: int = 2048,
                 context_length: int = 32,
                 max_position_embeddings: int = 77,
                 vocab_size: int = 49408,
                 projection_dims: int = 512,
                 norm_eps: float = 1e-5,
                 use_repmixer_blocks: bool = True,
                 repmixer_kernel_size: int = 11,
                 layer_scale_init: float = 1e-5,
                 pad_token_id: int = 49407,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if use_repmixer_blocks and layers < 2:
            raise ValueError('use_repmixer_blocks needs layers >= 2 (first and last layer)')
        self.embed_dims = embed_dims
        self.width = width
        self.context_length = context_length
        self.pad_token_id = pad_token_id
        self.encoder = _LiteTextTransformer(vocab_size, max_position_embeddings, width, layers,
                                            heads, hidden_dims, projection_dims, norm_eps,
                                            use_repmixer_blocks, repmixer_kernel_size,
                                            layer_scale_init)
        self.resizer = nn.Linear(width, embed_dims)

    def forward(self, token_ids: Tensor) -> Tuple[Tensor, Tensor]:
        if token_ids.dim() != 2:
            raise ValueError(f'token_ids must be (N, L), got shape {tuple(token_ids.shape)}')
        if token_ids.shape[1] > self.context_length:
            raise ValueError(f'sequence length {token_ids.shape[1]} exceeds the context length '
                             f'{self.context_length}')
        token_ids = token_ids.long()
        pad_mask = token_ids == 0
        ids = token_ids.masked_fill(pad_mask, self.pad_token_id)
        features = self.resizer(self.encoder(ids, ~pad_mask))
        return features, pad_mask
