"""Orderly end of a distributed run.

mmengine's runners never tear down the default process group; torch then destroys it while the
interpreter exits, and with gloo on CPU that teardown can abort a rank ("terminate called without
an active exception", SIGABRT) after the work is done, which turns a finished ``dist_train.sh``
run into a failed one. ``close_distributed`` waits for every rank and destroys the group
explicitly; tools/train.py and tools/test.py call it after the loop.
"""
import torch.distributed as torch_dist


def close_distributed() -> None:
    """Barrier, then destroy the default process group; a no-op when not distributed."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    torch_dist.barrier()
    torch_dist.destroy_process_group()
