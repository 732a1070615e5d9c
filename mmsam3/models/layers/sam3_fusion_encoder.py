"""SAM 3 text/prompt -> image fusion encoder (``transformer.encoder`` in the checkpoint).

A stack of pre-norm :class:`SAM3EncoderLayer` over the image tokens of one feature level: global
self-attention (sine position added to queries and keys), cross-attention to the prompt tokens
(text + geometry; no positions, padded tokens masked) and a ReLU FFN. There is no final norm and
the prompt tokens are not updated.
"""
from typing import Optional, Tuple

from mmdet.registry import MODELS
from torch import Tensor, nn

from .checkpoint import maybe_checkpoint
from .sam3_encoder_layer import SAM3EncoderLayer

__all__ = ['SAM3FusionEncoder']


@MODELS.register_module()
class SAM3FusionEncoder(nn.Module):
    """Fusion encoder: ``layers.{i}`` of pre-norm self/cross-attention layers.

    Args:
        num_layers (int): Number of layers (6 in SAM 3).
        embed_dims (int): Channels.
        num_heads (int): Attention heads.
        dim_feedforward (int): FFN hidden channels.
        dropout (float): Dropout (0.1 in SAM 3).
        with_cp (bool): Activation checkpointing of each layer in training (saves memory;
            optional, never required).

    Forward:
        img_feats ``(HW, B, C)`` flattened row-major image tokens (sequence-first);
        img_pos ``(HW, B, C)`` their sine position; prompt ``(S, B, C)``; prompt_mask
        ``(B, S)`` bool, True = padding.
        Returns ``(memory, pos)``, both ``(HW, B, C)`` sequence-first.
    """

    def __init__(self,
                 num_layers: int = 6,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 dim_feedforward: int = 2048,
                 dropout: float = 0.1,
                 with_cp: bool = False):
        super().__init__()
        self.embed_dims = embed_dims
        self.num_layers = num_layers
        self.with_cp = with_cp
        # Batch-first inside, as the official encoder: the image tokens are the long axis.
        self.layers = nn.ModuleList(
            SAM3EncoderLayer(embed_dims=embed_dims,
                             num_heads=num_heads,
                             dim_feedforward=dim_feedforward,
                             dropout=dropout,
                             pos_at_self_attn=True,
                             pos_at_cross_attn_queries=False,
                             pos_at_cross_attn_keys=False,
                             batch_first=True) for _ in range(num_layers))

    def init_weights(self):
        """Xavier-uniform on every matrix, as the official ``TransformerWrapper`` does."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self,
                img_feats: Tensor,
                img_pos: Tensor,
                prompt: Tensor,
                prompt_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        x = img_feats.transpose(0, 1)
        pos = img_pos.transpose(0, 1)
        prompt_bf = prompt.transpose(0, 1)
        for layer in self.layers:
            x = maybe_checkpoint(self, layer, x, prompt_bf, query_pos=pos,
                                 memory_key_padding_mask=prompt_mask)
        return x.transpose(0, 1), img_pos
