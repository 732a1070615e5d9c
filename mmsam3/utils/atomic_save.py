"""Atomic file writes: a file appears under its final name only once it is complete.

A write goes to a temporary file in the destination folder (``.<name>.<pid>.<random>.tmp``), is
flushed and fsynced, and is then renamed over the final name with :func:`os.replace`, which is
atomic on POSIX and Windows for two paths on one file system. A process killed half way (even
by SIGKILL) leaves at most the temporary file behind: the final name still holds the previous
complete file, or nothing. Temporary names never end in ``.pth``, so checkpoint searches skip them.

Used for every checkpoint mmsam3 writes and, through :mod:`mmsam3.utils.compat`, for mmengine's
``save_checkpoint`` and its ``last_checkpoint`` pointer.
"""
import os
import os.path as osp
import secrets
from contextlib import contextmanager

import torch

__all__ = ['atomic_open', 'atomic_torch_save', 'is_atomic_temporary']

_TMP_SUFFIX = '.tmp'


def _temporary_name(path):
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}')


def is_atomic_temporary(path):
    """Whether ``path`` is named like an unfinished :func:`atomic_open` write."""
    name = osp.basename(str(path))
    return name.startswith('.') and name.endswith(_TMP_SUFFIX)


def _fsync_folder(folder):
    """Make the rename itself durable; not every platform can open a folder, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path, mode='wb', encoding=None):
    """Open ``path`` for writing so that it is replaced in one step when the block ends.

    Args:
        path (str | os.PathLike): final file name. Missing parent folders are created. A symlink
            is followed, so its target is replaced, as ``open(path, 'w')`` would write it.
        mode (str): ``'wb'`` or ``'w'`` (text; ``encoding`` applies).

    Yields:
        The temporary file object (``f.name`` is its path). If the block raises, the temporary
        file is removed and ``path`` is left as it was.
    """
    if mode not in ('w', 'wb', 'wt'):
        raise ValueError(f'atomic_open writes whole files: mode must be "w" or "wb", got {mode!r}')
    path = osp.realpath(osp.expanduser(os.fspath(path)))
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = _temporary_name(path)
    # 'x': create exclusively; like 'w' it honours the umask, so permissions match open(path, 'w').
    binary = 'b' in mode
    f = open(tmp, 'xb' if binary else 'x', encoding=None if binary else encoding)
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` through :func:`atomic_open` (see the module docstring)."""
    with atomic_open(path, 'wb') as f:
        torch.save(obj, f)
