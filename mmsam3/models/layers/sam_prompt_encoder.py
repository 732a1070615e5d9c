"""SAM's prompt encoder (points, boxes as two corner points, a dense mask), Meta's names.

Sparse prompts are points in model-input pixels ``(x, y)`` with a label each:

==========  =====================================================================
label       meaning
==========  =====================================================================
``-1``      padding (``not_a_point_embed`` replaces the position encoding)
``0``       negative click (``point_embeddings.0`` added)
``1``       positive click (``point_embeddings.1``)
``2``/``3`` a box's top-left / bottom-right corner (``point_embeddings.2`` / ``.3``)
==========  =====================================================================

A point's embedding is the random-Fourier encoding (:class:`SAMRandomPositionEncoding`) of its
pixel centre (``xy + 0.5``, divided by the input size) plus its label's embedding. As in
Meta's image predictor (``SAM3InteractiveImagePredictor._predict``, boxes passed as points with
labels 2 / 3), one padding point (label -1) is appended after the given points. A dense mask
prompt (logits at 4x the feature grid, e.g. 288 x 288 for SAM 3) goes through
``mask_downscaling`` (two stride-2 convs with LayerNorm2d + GELU, then a 1x1 conv); without one,
``no_mask_embed`` is broadcast over the grid. Parameter names equal Meta's
``tracker.sam_prompt_encoder.*`` (``sam3/sam/prompt_encoder.py``).
"""
import math
from typing import Optional, Tuple

import torch
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['SAMPromptEncoder', 'SAMRandomPositionEncoding', 'LayerNorm2d']


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of ``(B, C, H, W)`` (ConvNeXt / SAM)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SAMRandomPositionEncoding(nn.Module):
    """Position encoding with random spatial frequencies (SAM's ``PositionEmbeddingRandom``).

    The ``(2, num_feats)`` Gaussian matrix is a buffer (``positional_encoding_gaussian_matrix``),
    saved in checkpoints. Output channels: ``2 * num_feats`` (sin then cos).
    """

    def __init__(self, num_feats: int = 64, scale: Optional[float] = None):
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0 else scale
        self.register_buffer('positional_encoding_gaussian_matrix',
                             scale * torch.randn((2, num_feats)))

    def _pe_encoding(self, coords: Tensor) -> Tensor:
        """``(..., 2)`` coordinates in ``[0, 1]`` -> ``(..., 2 * num_feats)``."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> Tensor:
        """Encoding of the cell centres of an ``h x w`` grid -> ``(C, h, w)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        return self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: Tensor, image_size: Tuple[int, int]) -> Tensor:
        """``(B, N, 2)`` pixel ``(x, y)`` in an ``image_size = (H, W)`` image -> ``(B, N, C)``."""
        size = coords.new_tensor([float(image_size[1]), float(image_size[0])])
        return self._pe_encoding((coords / size).float())


@MODELS.register_module()
class SAMPromptEncoder(nn.Module):
    """Encodes clicks, boxes (as corner points) and a mask prompt for :class:`SAMMaskDecoder`.

    Args:
        embed_dims (int): Prompt / decoder channels (SAM 3: 256).
        image_embedding_size (tuple[int, int]): Feature grid ``(h, w)`` (SAM 3: 72 x 72).
        input_image_size (tuple[int, int]): Model-input size ``(H, W)`` the point coordinates
            refer to (SAM 3: 1008 x 1008).
        mask_in_chans (int): Hidden channels of the mask downscaler (SAM: 16).

    Forward:
        point_coords ``(B, N, 2)`` float pixel ``(x, y)`` in the model input, or None;
        point_labels ``(B, N)`` int (-1 pad, 0 neg, 1 pos, 2 / 3 box corners), or None;
        mask_input ``(B, 1, 4h, 4w)`` logits, or None.

        Returns ``(sparse (B, N + 1, C), dense (B, C, h, w))``; with no points, sparse is
        ``(B, 0, C)`` (Meta's image predictor with a mask prompt alone).
    """

    num_point_embeddings = 4

    def __init__(self, embed_dims: int = 256, image_embedding_size: Tuple[int, int] = (72, 72),
                 input_image_size: Tuple[int, int] = (1008, 1008), mask_in_chans: int = 16):
        super().__init__()
        self.embed_dims = embed_dims
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = SAMRandomPositionEncoding(embed_dims // 2)
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dims) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dims)
        self.mask_input_size = (4 * self.image_embedding_size[0],
                                4 * self.image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dims, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dims)
        self._dense_pe, self._dense_pe_key = None, None

    def get_dense_pe(self) -> Tensor:
        """Position encoding of the feature grid, ``(1, C, h, w)``.

        A constant of the model: computed once and reused (every click needs it) while the
        ``(2, C/2)`` frequency buffer holds the same values on the same device (compared
        each call; a checkpoint load or a move recomputes it); traced and exported graphs
        compute it."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or \
                torch.onnx.is_in_onnx_export():
            return self.pe_layer(self.image_embedding_size).unsqueeze(0)
        freq = self.pe_layer.positional_encoding_gaussian_matrix
        cached = self._dense_pe_key
        if cached is None or cached[0] != self.image_embedding_size or \
                cached[1].device != freq.device or not torch.equal(cached[1], freq):
            with torch.no_grad():
                self._dense_pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            self._dense_pe_key = (self.image_embedding_size, freq.detach().clone())
        return self._dense_pe

    def embed_points(self, points: Tensor, labels: Tensor, pad: bool = True) -> Tensor:
        """``(B, N, 2)`` pixels and ``(B, N)`` labels -> ``(B, N [+1], C)``."""
        points = points.float() + 0.5  # pixel centre
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == -1, torch.zeros_like(emb) + self.not_a_point_embed.weight,
                          emb)
        for i in range(self.num_point_embeddings):
            emb = torch.where(labels == i, emb + self.point_embeddings[i].weight, emb)
        return emb

    def embed_masks(self, masks: Tensor) -> Tensor:
        return self.mask_downscaling(masks)

    def forward(self, point_coords: Optional[Tensor], point_labels: Optional[Tensor],
                mask_input: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        if point_coords is not None:
            bs = point_coords.shape[0]
        elif mask_input is not None:
            bs = mask_input.shape[0]
        else:
            bs = 1
        device = self.no_mask_embed.weight.device
        if point_coords is not None:
            if point_labels is None:
                raise ValueError('point_labels must be given with point_coords')
            sparse = self.embed_points(point_coords, point_labels, pad=True)
        else:
            sparse = torch.empty((bs, 0, self.embed_dims), device=device)
        if mask_input is not None:
            dense = self.embed_masks(mask_input)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
