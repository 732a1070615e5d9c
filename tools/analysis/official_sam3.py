"""Harness around Meta's official ``sam3`` package, for parity checks only.

mmsam3 never imports ``sam3``; tests and ``tools/analysis`` scripts do, through this module. The
official code assumes CUDA in three places (two ``device="cuda"`` at construction time and one
``pin_memory()`` while encoding box prompts). :func:`patch_official_for_cpu` redirects those to the
CPU in memory; site-packages is never edited.
"""
import functools
import os
import os.path as osp
import types

import torch

_SHARED = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..', 'shared'))
BPE_PATH = os.environ.get('MMSAM3_BPE_PATH',
                          osp.join(_SHARED, 'data', 'bpe_simple_vocab_16e6.txt.gz'))

_PATCHED = False


def official_available():
    """Return ``(ok, reason)``: whether the official package can be imported here."""
    try:
        import sam3  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return False, f'official sam3 package not importable: {exc!r}'
    return True, ''


class _CpuDefaultTorch(types.ModuleType):
    """Stand-in for ``torch`` inside one official module: ``device='cuda'`` becomes the CPU."""

    def __init__(self):
        super().__init__('torch')

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def zeros(*args, **kwargs):
        if str(kwargs.get('device', '')).startswith('cuda') and not torch.cuda.is_available():
            kwargs['device'] = 'cpu'
        return torch.zeros(*args, **kwargs)


def patch_official_for_cpu():
    """Make the official image model build and run on a machine without CUDA (idempotent)."""
    global _PATCHED
    if _PATCHED or torch.cuda.is_available():
        return
    from sam3.model import decoder, position_encoding

    # 1. PositionEmbeddingSine precomputes its cache with torch.zeros(..., device="cuda").
    position_encoding.torch = _CpuDefaultTorch()

    # 2. TransformerDecoder builds its boxRPB coordinate cache on device="cuda".
    original_get_coords = decoder.TransformerDecoder._get_coords

    @functools.wraps(original_get_coords)
    def _get_coords(H, W, device):
        if str(device).startswith('cuda'):
            device = 'cpu'
        return original_get_coords(H, W, device)

    decoder.TransformerDecoder._get_coords = staticmethod(_get_coords)

    # 3. SequenceGeometryEncoder pins a small CPU tensor, which needs a CUDA driver.
    torch.Tensor.pin_memory = lambda self, *args, **kwargs: self
    _PATCHED = True
