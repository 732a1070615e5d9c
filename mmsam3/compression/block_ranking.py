"""Score the teacher's ViT blocks on calibration images: how much each changes its input.

A block whose output is nearly its input (cosine close to 1 over the tokens) adds little and is
the first to drop (the redundancy criterion used for layer dropping in DINOv2-style ViTs).
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['score_vit_blocks']


@torch.no_grad()
def score_vit_blocks(backbone: nn.Module, images: Sequence[Tensor],
                     batch_size: int = 1) -> List[float]:
    """Mean ``1 - cos(x_in, x_out)`` of every block of ``backbone`` (a ``SAM3ViT``).

    Args:
        backbone (nn.Module): the teacher's ViT, with ``blocks``.
        images (Sequence[Tensor]): normalised ``(3, H, W)`` images (H, W multiples of the patch
            size), e.g. from :func:`~.compressor.load_calibration_images`.
        batch_size (int): images per forward.

    Returns:
        list[float]: one score per block, higher = the block changes its input more (keep).
    """
    if not len(images):
        raise ValueError('score_vit_blocks needs at least one calibration image')
    sums = [0.0] * len(backbone.blocks)
    count = 0

    def hook(idx):
        def fn(module, args, output):
            x_in, x_out = args[0].flatten(0, -2).float(), output.flatten(0, -2).float()
            sums[idx] += float((1 - F.cosine_similarity(x_in, x_out, dim=-1)).mean())
        return fn

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(backbone.blocks)]
    was_training = backbone.training
    backbone.eval()
    try:
        device = next(backbone.parameters()).device
        for start in range(0, len(images), batch_size):
            batch = torch.stack(list(images[start:start + batch_size])).to(device)
            backbone(batch)
            count += 1
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    return [s / count for s in sums]
