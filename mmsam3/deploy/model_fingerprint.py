"""A short fingerprint of a module's weights, so artefacts made from one model are not used
with another (a text-feature cache, graph files beside a manifest)."""
import hashlib

import torch
from torch import nn

__all__ = ['weights_fingerprint']


@torch.no_grad()
def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over the names, shapes, dtypes and bytes of every parameter
    and buffer of ``module``, in name order. Same weights give the same value on any device."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tuple(tensor.shape)}:{tensor.dtype};'.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
