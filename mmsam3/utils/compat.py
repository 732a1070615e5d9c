"""Compatibility layer between OpenMMLab's releases and current PyTorch.

Imported (and applied) by ``import mmsam3``; it patches objects in memory only, never files in
site-packages. What it fixes:

* **Checkpoints on torch >= 2.6.** ``torch.load`` now defaults to ``weights_only=True`` and refuses
  the objects mmengine itself writes into checkpoints (``HistoryBuffer``, numpy arrays and scalars
  in the message hub). We allow-list exactly those types with
  ``torch.serialization.add_safe_globals`` so ``--resume`` and ``load_from`` work, while a file
  whose pickle would import anything else (for example ``os.system``) is refused with
  :class:`UntrustedCheckpointError` before any of its code runs. A user who trusts such a file can
  opt in per file with :func:`trust_checkpoint` or ``MMSAM3_TRUSTED_CHECKPOINTS``.
  mmengine's ``http(s)://`` loader used ``torch.hub`` with ``weights_only=False``; it goes through the
  same safe path now.
* **``mmsam3::`` config paths from an editable install.** mmengine locates a package's ``.mim``
  folder next to its dist-info, which is wrong for PEP 660 editable installs; the lookup falls back
  to where Python actually imports the package from.
* **Distributed training without GPUs.** mmengine 0.10.7 calls ``torch.cuda.set_device`` for every
  ``pytorch`` launch and passes ``device_ids`` to DDP, so ``torchrun`` + gloo on a CPU machine fails.
  Both are skipped when CUDA is not available (``nccl`` then falls back to ``gloo``).
"""
import os
import os.path as osp
import pickle
import warnings
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    'UntrustedCheckpointError', 'safe_torch_load', 'trust_checkpoint', 'trusted_checkpoints',
    'apply_compat'
]

TRUST_ENV = 'MMSAM3_TRUSTED_CHECKPOINTS'
_trusted_paths = set()


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs objects outside the allow-list to be unpickled.

    Loading it would run code chosen by whoever wrote the file, so it is refused.
    """


def _mmengine_checkpoint_globals():
    """Types that mmengine/mmdet write into their own checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer

    types = [HistoryBuffer, np.ndarray, np.dtype, np.generic]
    # numpy's array/scalar reconstructors, under their numpy 1.x and 2.x module paths.
    for mod_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        types += [mod._reconstruct, mod.scalar]
    # Concrete dtype classes (numpy >= 1.25) and scalar types appear in pickled numpy objects.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    types += [
        np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
        np.uint16, np.uint32, np.uint64, np.bool_, np.str_
    ]
    return types


def _history_buffer_getattr(obj, name):
    """Stands in for ``getattr`` while unpickling: only ``HistoryBuffer``'s statistics methods.

    mmengine pickles ``HistoryBuffer._statistics_methods`` as ``getattr(HistoryBuffer, 'mean')``
    and so on. Allowing the real ``getattr`` would let a crafted file walk from an allowed class
    to arbitrary functions, so any other use is refused.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_') \
            and callable(getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__name__", type(obj).__name__)!s}, {name!r}) is not allowed '
        'while loading a checkpoint')


def _register_safe_globals():
    torch.serialization.add_safe_globals(
        _mmengine_checkpoint_globals() + [(_history_buffer_getattr, 'builtins.getattr')])


def _normpath(path):
    return osp.realpath(osp.expanduser(str(path)))


def _is_trusted(path):
    env = os.environ.get(TRUST_ENV, '')
    trusted = set(_trusted_paths)
    trusted.update(_normpath(p) for p in env.split(os.pathsep) if p)
    return _normpath(path) in trusted


def trust_checkpoint(path):
    """Allow full (code-executing) unpickling of one checkpoint file you trust."""
    _trusted_paths.add(_normpath(path))


@contextmanager
def trusted_checkpoints(*paths):
    """Context manager form of :func:`trust_checkpoint`, limited to the ``with`` block."""
    added = [_normpath(p) for p in paths if _normpath(p) not in _trusted_paths]
    _trusted_paths.update(added)
    try:
        yield
    finally:
        _trusted_paths.difference_update(added)


def _unsafe_globals(path):
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint or unreadable: the message still explains
        return []


def safe_torch_load(path, map_location=None):
    """``torch.load`` with ``weights_only=True`` plus mmengine's own types.

    Raises:
        FileNotFoundError: the file does not exist.
        UntrustedCheckpointError: the file needs code outside the allow-list and was not marked
            as trusted. Nothing from it has run.
    """
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} can not be found.')
    if _is_trusted(path):
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _unsafe_globals(path)
        # torch's own message suggests weights_only=False for every file; keep only its diagnosis.
        what = (f' It references {", ".join(found)}.'
                if found else f' {str(exc).strip().splitlines()[-1]}')
        raise UntrustedCheckpointError(
            f'Refusing to load checkpoint {path!r}: unpickling it would need objects outside '
            f'the allow-list of tensors, containers and the types mmengine itself saves.{what} '
            'A file from an unknown source can run arbitrary code this way. If you trust this '
            f'file, allow it explicitly: set {TRUST_ENV}={path} (paths separated by '
            f"'{os.pathsep}') or call mmsam3.utils.trust_checkpoint({path!r}) "
            'before loading.') from None


def _load_from_local(filename, map_location):
    return safe_torch_load(filename, map_location=map_location)


def _load_url(url, model_dir=None, map_location=None, progress=True):
    """Download like ``torch.hub`` does, then load through :func:`safe_torch_load`."""
    from urllib.parse import urlparse

    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, progress=progress)
    return safe_torch_load(cached, map_location=map_location)


def _init_dist_pytorch_any_device(backend, init_backend='torch', **kwargs):
    """mmengine's ``pytorch`` launcher, minus ``cuda.set_device`` where there is no GPU."""
    import torch.distributed as torch_dist

    if torch.cuda.is_available() or init_backend != 'torch':
        return _ORIGINALS['init_dist_pytorch'](backend, init_backend=init_backend, **kwargs)
    if backend == 'nccl':
        warnings.warn('CUDA is not available: using the gloo backend instead of nccl.')
        backend = 'gloo'
    torch_dist.init_process_group(backend=backend, **kwargs)


_ORIGINALS = {}


def _patch_checkpoint_loading():
    from mmengine.runner import checkpoint as ckpt

    ckpt.CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    # load_from_http (also behind modelzoo:// and open-mmlab://) resolves load_url at call time.
    ckpt.load_url = _load_url


def _patch_cpu_distributed():
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import MMDistributedDataParallel

    if 'init_dist_pytorch' not in _ORIGINALS:
        _ORIGINALS['init_dist_pytorch'] = dist_utils._init_dist_pytorch
        dist_utils._init_dist_pytorch = _init_dist_pytorch_any_device

    if 'ddp_init' not in _ORIGINALS:
        original_init = MMDistributedDataParallel.__init__
        _ORIGINALS['ddp_init'] = original_init

        def __init__(self, module, detect_anomalous_params=False, **kwargs):
            if not torch.cuda.is_available():
                # DDP over CPU modules takes no device ids; mmengine always passes LOCAL_RANK.
                kwargs.pop('device_ids', None)
                kwargs.pop('output_device', None)
            original_init(self, module, detect_anomalous_params=detect_anomalous_params, **kwargs)

        MMDistributedDataParallel.__init__ = __init__


def _installed_path_following_imports(package):
    """``get_installed_path`` that also works for PEP 660 editable installs."""
    import importlib.util

    path = _ORIGINALS['get_installed_path'](package)
    if not osp.isdir(path):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            return osp.dirname(spec.origin)
    return path


def _patch_installed_path_lookup():
    import mmengine.config.config as config_module
    import mmengine.hub.hub as hub_module
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.utils import package_utils

    # mmengine only resolves `pkg::path` for the OpenMMLab projects it lists.
    MODULE2PACKAGE.setdefault('mmsam3', 'mmsam3')

    if 'get_installed_path' not in _ORIGINALS:
        _ORIGINALS['get_installed_path'] = package_utils.get_installed_path
        for module in (config_module, hub_module):
            module.get_installed_path = _installed_path_following_imports


def apply_compat():
    """Apply every patch (idempotent)."""
    _register_safe_globals()
    _patch_checkpoint_loading()
    _patch_cpu_distributed()
    _patch_installed_path_lookup()


apply_compat()
