"""Activation checkpointing behind the ``with_cp`` switch (mmcv / mmdet's name).

Every SAM 3 module that can trade compute for memory calls :func:`maybe_checkpoint` instead of
``torch.utils.checkpoint`` directly, so the guard (switch on, training, gradients enabled) and
the non-reentrant mode are written once.
"""
from typing import Any, Callable

import torch
import torch.utils.checkpoint as cp
from torch import nn

__all__ = ['maybe_checkpoint']


def maybe_checkpoint(owner: nn.Module, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, recomputed in backward when ``owner`` asks for it.

    The activations of ``fn`` are dropped after the forward pass and recomputed in backward
    (``torch.utils.checkpoint.checkpoint`` with ``use_reentrant=False``, so keyword arguments,
    non-tensor arguments and frozen inputs work) only when ``owner.with_cp`` is True,
    ``owner`` is in training mode and gradients are enabled; otherwise ``fn`` runs as is.
    Outputs and gradients are the same either way.

    Args:
        owner (nn.Module): the module whose ``with_cp`` and ``training`` decide.
        fn (Callable): a module or function, usually a layer of ``owner``.
        *args, **kwargs: its arguments.

    Returns:
        Whatever ``fn`` returns.
    """
    if owner.with_cp and owner.training and torch.is_grad_enabled():
        return cp.checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return fn(*args, **kwargs)
