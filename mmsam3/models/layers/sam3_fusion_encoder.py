"""SAM 3 text/prompt -> image fusion encoder (``transformer.encoder`` in the checkpoint).

A stack of pre-norm :class:`SAM3EncoderLayer` over the image tokens of one feature level: global
self-attention (sine position added to queries and keys), cross-attention to the prompt tokens
(text + geometry; no positions, padded tokens masked) and a ReLU FFN. There is no final norm and
the prompt tokens are not updated.

The first layer's self-attention sees the image tokens only, so it is the same for every prompt
on an image: given ``img_ids`` (the image of each prompt) the encoder runs it once per image and
gathers the prompts' copies afterwards; :meth:`first_self_attn` computes it alone, for callers
that keep it between prompts (:class:`~mmsam3.apis.SAM3Predictor`).
"""
from typing import Optional, Tuple

import torch
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
        ``(B, S)`` bool, True = padding. With ``img_ids`` ``(B,)`` long, ``img_feats`` and
        ``img_pos`` are per image, ``(HW, B_img, C)``, and prompt ``b`` reads image
        ``img_ids[b]``; ``first_self_attn`` (batch-first ``(B_img, HW, C)``, from
        :meth:`first_self_attn`) replaces the first layer's self-attention.
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

    def first_self_attn(self, img_feats: Tensor, img_pos: Tensor) -> Tensor:
        """The first layer's self-attention block on ``(HW, B_img, C)`` image tokens and
        positions; ``(B_img, HW, C)`` batch-first (what :meth:`forward` takes back)."""
        return maybe_checkpoint(self, self.layers[0].forward_self_attn, img_feats.transpose(0, 1),
                                img_pos.transpose(0, 1))

    def forward(self,
                img_feats: Tensor,
                img_pos: Tensor,
                prompt: Tensor,
                prompt_mask: Optional[Tensor] = None,
                img_ids: Optional[Tensor] = None,
                first_self_attn: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        prompt_bf = prompt.transpose(0, 1)
        if img_ids is None and first_self_attn is None:
            x = img_feats.transpose(0, 1)
            pos = img_pos.transpose(0, 1)
            layers = self.layers
        else:
            if first_self_attn is None:
                first_self_attn = self.first_self_attn(img_feats, img_pos)
            elif first_self_attn.shape[1:] != img_feats.shape[:1] + img_feats.shape[2:]:
                raise ValueError(f'first_self_attn {tuple(first_self_attn.shape)} does not fit '
                                 f'image tokens {tuple(img_feats.shape)} (HW, B_img, C)')
            ids = (torch.zeros(prompt.shape[1], dtype=torch.long, device=img_feats.device)
                   if img_ids is None else img_ids.to(img_feats.device))
            pos = img_pos.transpose(0, 1)[ids]
            x = maybe_checkpoint(self, self.layers[0].forward_cross_ffn, first_self_attn[ids],
                                 prompt_bf, query_pos=pos, memory_key_padding_mask=prompt_mask)
            img_pos = pos.transpose(0, 1)
            layers = self.layers[1:]
        for layer in layers:
            x = maybe_checkpoint(self, layer, x, prompt_bf, query_pos=pos,
                                 memory_key_padding_mask=prompt_mask)
        return x.transpose(0, 1), img_pos
