"""Compatibility layer between OpenMMLab's releases and current PyTorch.

Imported (and applied) by ``import mmsam3``; it patches objects in memory only, never files in
site-packages. What it fixes:

* **Checkpoints on torch >= 2.6.** ``torch.load`` now defaults to ``weights_only=True`` and refuses
  the objects mmengine itself writes into checkpoints (``HistoryBuffer``, numpy arrays and scalars
  in the message hub, empty ones too: their data is pickled as the call ``bytes()``). We
  allow-list exactly those types with ``torch.serialization.add_safe_globals`` so ``--resume``
  and ``load_from`` work, while a file whose pickle would import anything else (for example
  ``os.system``) is refused with :class:`UntrustedCheckpointError` before any of its code runs. A
  user who trusts such a file can opt in per file with :func:`trust_checkpoint` or
  ``MMSAM3_TRUSTED_CHECKPOINTS``. mmengine's ``http(s)://`` loader used ``torch.hub`` with
  ``weights_only=False``; it goes through the same safe path now.
* **Checkpoints that survive a kill.** mmengine writes checkpoints and its ``last_checkpoint``
  pointer in place, so a kill mid-save leaves a partial file under the final name. Local saves
  now go through :mod:`mmsam3.utils.atomic_save` (temporary file, fsync, ``os.replace``), the
  pointer is replaced the same way after the checkpoint is complete, and ``CheckpointHook``
  deletes outdated checkpoints only after the new one is written. Auto-resume checks the file
  ``last_checkpoint`` names and falls back, with a warning, to the newest readable checkpoint
  (:mod:`mmsam3.utils.checkpoint_integrity`); an explicit ``--resume PATH`` that cannot be read
  is refused with an error naming a good one.
* **``mmsam3::`` config paths from an editable install.** mmengine locates a package's ``.mim``
  folder next to its dist-info, which is wrong for PEP 660 editable installs; the lookup falls back
  to where Python actually imports the package from.
* **Distributed training without GPUs.** mmengine 0.10.7 calls ``torch.cuda.set_device`` for every
  ``pytorch`` launch and passes ``device_ids`` to DDP, so ``torchrun`` + gloo on a CPU machine fails.
  Both are skipped when CUDA is not available (``nccl`` then falls back to ``gloo``).
* **FSDP through ``FlexibleRunner`` + ``FSDPStrategy``.** The strategy hands FSDP
  ``device_id=LOCAL_RANK`` (a CUDA index); without CUDA the wrapper gets the CPU device instead,
  so FSDP runs on gloo (mmengine's own FSDP test is skipped without CUDA). Gradient clipping of
  ``OptimWrapper`` calls ``torch.nn.utils.clip_grad_norm_`` on each rank's shard, which gives
  every rank a different norm; under FSDP it goes through ``FullyShardedDataParallel.
  clip_grad_norm_`` (the norm of the whole gradient, as DDP clips). A model that the wrap
  policy leaves in one unit is refused (:func:`mmsam3.engine.fsdp.check_fsdp_wrapped`).
  ``--resume`` loads the optimizer state with ``FSDP.optim_state_dict_to_load`` by keyword
  (mmengine passes the arguments in the order of torch < 2.1), and a full state dict is copied
  into the gathered parameters in place: with ``use_orig_params`` FSDP's own full-state-dict
  load leaves the optimizer stepping storages the model no longer uses (the run after
  ``--resume`` then drifts from an uninterrupted one). On a CPU, torch's full optimizer state
  dict kept views of one reused gather buffer, so every per-parameter state of the checkpoint
  held the last state gathered (AdamW's ``exp_avg`` saved as ``exp_avg_sq``); each state is
  copied out of that buffer before the next is gathered.
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


def _empty_bytes(*args):
    """Stands in for ``bytes`` while unpickling: only ``bytes()``, the empty value.

    Pickle protocol 2 (torch.save's) writes ``b''`` as the call ``bytes()``, which is how an empty
    numpy array (and so an empty ``HistoryBuffer``) stores its data. Any argument is refused:
    ``bytes(n)`` would let a crafted file allocate n bytes.
    """
    if args:
        raise pickle.UnpicklingError(
            f'bytes{args!r} is not allowed while loading a checkpoint (only bytes())')
    return b''


def _register_safe_globals():
    stand_ins = [(_history_buffer_getattr, 'builtins.getattr'), (_empty_bytes, 'builtins.bytes')]
    torch.serialization.add_safe_globals(_mmengine_checkpoint_globals() + stand_ins)


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


def _fsdp_clip_grad_norm(fsdp_model):
    """``clip_grad_norm_(params, max_norm, norm_type)`` for an FSDP model: the total norm over
    every rank's shard (FSDP's own), whatever subset of parameters the caller passes."""

    def clip(params, max_norm, norm_type=2, **kwargs):
        return fsdp_model.clip_grad_norm_(max_norm, norm_type)

    return clip


def _load_full_state_dict_in_place(fsdp_model, state_dict, strict):
    """Copy a full (plain-model) state dict into an FSDP model's gathered parameters and its
    buffers, in place, then let FSDP write the shards back."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    def clean(name):
        for prefix in ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.'):
            name = name.replace(prefix, '')
        return name

    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    seen = set()
    with FSDP.summon_full_params(fsdp_model, writeback=True, rank0_only=False):
        with torch.no_grad():
            for name, tensor in list(fsdp_model.named_parameters()) + list(
                    fsdp_model.named_buffers()):
                key = clean(name)
                if key in state_dict:
                    tensor.copy_(state_dict[key].to(tensor.dtype))
                    seen.add(key)
    missing = sorted(clean(n) for n, _ in fsdp_model.named_parameters() if clean(n) not in seen)
    unexpected = sorted(set(state_dict) - seen)
    if strict and (missing or unexpected):
        raise RuntimeError(f'Error loading a full state dict into the FSDP model: missing keys '
                           f'{missing[:10]}, unexpected keys {unexpected[:10]}')
    if missing or unexpected:
        warnings.warn(f'FSDP load: {len(missing)} missing keys {missing[:5]}, '
                      f'{len(unexpected)} unexpected keys {unexpected[:5]}')


def _patch_fsdp():
    from mmengine._strategy.fsdp import FSDPStrategy
    from mmengine.model.wrappers import MMFullyShardedDataParallel
    from torch.distributed.fsdp import _optim_utils

    if 'fsdp_unflatten_orig_param_states' not in _ORIGINALS:
        original_unflatten = _optim_utils._unflatten_orig_param_states
        _ORIGINALS['fsdp_unflatten_orig_param_states'] = original_unflatten

        def _unflatten_orig_param_states(fsdp_param_info, output_states, state_name, *args,
                                         **kwargs):
            # torch gathers every state of a flat parameter (AdamW's exp_avg, then exp_avg_sq)
            # into one reused buffer and keeps views of it; the offload copy (`.cpu()`) is what
            # separates them on a GPU, and on a CPU it returns the same storage, so every saved
            # state ended as the last one gathered (exp_avg == exp_avg_sq in the checkpoint).
            if fsdp_param_info.state.compute_device.type == 'cpu':
                for gathered in output_states.values():
                    value = gathered.get(state_name)
                    if type(value) is torch.Tensor:
                        gathered[state_name] = value.clone()
            return original_unflatten(fsdp_param_info, output_states, state_name, *args,
                                      **kwargs)

        _optim_utils._unflatten_orig_param_states = _unflatten_orig_param_states

    if 'fsdp_init' not in _ORIGINALS:
        original_init = MMFullyShardedDataParallel.__init__
        _ORIGINALS['fsdp_init'] = original_init

        def __init__(self, module, *args, **kwargs):
            if not torch.cuda.is_available() and isinstance(kwargs.get('device_id'), int):
                kwargs['device_id'] = torch.device('cpu')
            original_init(self, module, *args, **kwargs)

        MMFullyShardedDataParallel.__init__ = __init__

    if 'fsdp_wrap_model' not in _ORIGINALS:
        original_wrap = FSDPStrategy._wrap_model
        _ORIGINALS['fsdp_wrap_model'] = original_wrap

        def _wrap_model(self, model):
            from mmsam3.engine.fsdp import check_fsdp_wrapped
            wrapped = original_wrap(self, model)
            if wrapped is not None:
                check_fsdp_wrapped(wrapped)
            return wrapped

        FSDPStrategy._wrap_model = _wrap_model

    if 'fsdp_build_optim_wrapper' not in _ORIGINALS:
        original_build = FSDPStrategy.build_optim_wrapper
        _ORIGINALS['fsdp_build_optim_wrapper'] = original_build

        def build_optim_wrapper(self, optim_wrapper, model=None):
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            built = original_build(self, optim_wrapper, model)
            wrappers = built.values() if hasattr(built, 'values') else [built]
            for wrapper in wrappers:
                if isinstance(model, FSDP) and getattr(wrapper, 'grad_name', None) == 'grad_norm':
                    wrapper.clip_func = _fsdp_clip_grad_norm(model)
            return built

        FSDPStrategy.build_optim_wrapper = build_optim_wrapper

    if 'fsdp_load_model_state_dict' not in _ORIGINALS:
        original_load_model = FSDPStrategy.load_model_state_dict
        _ORIGINALS['fsdp_load_model_state_dict'] = original_load_model

        def load_model_state_dict(self, state_dict, *, strict=False, revise_keys=None):
            if not self._is_full_state_dict():
                return original_load_model(self, state_dict, strict=strict)
            _load_full_state_dict_in_place(self.model, state_dict, strict)

        FSDPStrategy.load_model_state_dict = load_model_state_dict

    if 'fsdp_load_optim_state_dict' not in _ORIGINALS:
        _ORIGINALS['fsdp_load_optim_state_dict'] = FSDPStrategy.load_optim_state_dict

        def load_optim_state_dict(self, state_dict):
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            extra = {k: v for k, v in state_dict.items() if k not in ('state', 'param_groups')}
            optim = dict(state=state_dict['state'], param_groups=state_dict['param_groups'])
            # Every rank read the whole file: load it on every rank (with rank0_only, ranks
            # other than 0 lose per-parameter scalars such as AdamW's step count).
            from torch.distributed.fsdp import (FullOptimStateDictConfig,
                                                FullStateDictConfig, StateDictType)
            with FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT,
                                      FullStateDictConfig(rank0_only=False),
                                      FullOptimStateDictConfig(rank0_only=False)):
                loaded = FSDP.optim_state_dict_to_load(
                    model=self.model, optim=self.optim_wrapper.optimizer,
                    optim_state_dict=optim)
            loaded.update(extra)
            self.optim_wrapper.load_state_dict(loaded)

        FSDPStrategy.load_optim_state_dict = load_optim_state_dict


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


def _save_checkpoint_atomically(checkpoint, filename, file_client_args=None, backend_args=None):
    """mmengine's ``save_checkpoint``; a local file is written with :func:`atomic_torch_save`."""
    from mmengine.fileio import LocalBackend, get_file_backend

    from .atomic_save import atomic_torch_save

    original = _ORIGINALS['save_checkpoint']
    if file_client_args is not None or str(filename).startswith('pavi://'):
        return original(checkpoint,
                        filename,
                        file_client_args=file_client_args,
                        backend_args=backend_args)
    if not isinstance(get_file_backend(filename, backend_args=backend_args), LocalBackend):
        return original(checkpoint, filename, backend_args=backend_args)
    atomic_torch_save(checkpoint, filename)


class _DeferredRemovals:
    """A file backend whose ``remove`` / ``rmtree`` wait for :meth:`apply`; the rest pass on.

    ``CheckpointHook`` deletes the oldest (or previous best) checkpoint *before* writing the new
    one; with ``max_keep_ckpts=1`` a kill in between leaves nothing to resume from.
    """

    def __init__(self, backend):
        self._backend = backend
        self._pending = []

    def remove(self, path):
        self._pending.append((self._backend.remove, path))

    def rmtree(self, path):
        self._pending.append((self._backend.rmtree, path))

    def apply(self):
        for remove, path in self._pending:
            remove(path)
        self._pending.clear()

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _remove_after_saving(method):
    """Wrap a ``CheckpointHook`` method so its deletions happen only after it saved."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        backend = self.file_backend
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            result = method(self, *args, **kwargs)
        finally:
            self.file_backend = backend
        deferred.apply()
        return result

    wrapper._mmsam3_removes_after_saving = True
    return wrapper


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    """``open`` as seen by mmengine's checkpoint hook: its ``last_checkpoint`` write is atomic."""
    from .atomic_save import atomic_open

    if osp.basename(str(file)) == 'last_checkpoint' and mode in ('w', 'wt') and not args:
        return atomic_open(file, mode, encoding=kwargs.get('encoding'))
    return open(file, mode, *args, **kwargs)


def _patch_checkpoint_saving():
    import sys

    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as ckpt

    if 'save_checkpoint' not in _ORIGINALS:
        _ORIGINALS['save_checkpoint'] = ckpt.save_checkpoint
    original = _ORIGINALS['save_checkpoint']
    # mmengine binds the function by name in several modules (runner, strategies, hooks).
    for module in list(sys.modules.values()):
        if getattr(module, '__dict__', {}).get('save_checkpoint') is original:
            module.save_checkpoint = _save_checkpoint_atomically
    # Module globals shadow builtins: only the hook's own `open` calls see this one.
    checkpoint_hook.open = _checkpoint_hook_open
    hook = checkpoint_hook.CheckpointHook
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        method = getattr(hook, name)
        if not getattr(method, '_mmsam3_removes_after_saving', False):
            setattr(hook, name, _remove_after_saving(method))


def _find_latest_readable(path):
    """mmengine's ``find_latest_checkpoint``, checked; see ``find_latest_readable_checkpoint``."""
    from .checkpoint_integrity import find_latest_readable_checkpoint

    return find_latest_readable_checkpoint(path, _ORIGINALS['find_latest_checkpoint'](path))


def _patch_resume():
    from mmengine.runner import _flexible_runner
    from mmengine.runner import checkpoint as ckpt
    from mmengine.runner import runner as runner_module

    _ORIGINALS.setdefault('find_latest_checkpoint', ckpt.find_latest_checkpoint)
    # Auto-resume resolves its file through this name in each runner module.
    for module in (runner_module, _flexible_runner):
        module.find_latest_checkpoint = _find_latest_readable

    if 'load_or_resume' not in _ORIGINALS:
        original = runner_module.Runner.load_or_resume
        _ORIGINALS['load_or_resume'] = original

        def load_or_resume(self):
            from .checkpoint_integrity import check_resume_checkpoint

            if not self._has_loaded and self._resume and self._load_from is not None:
                check_resume_checkpoint(self._load_from, self.work_dir)
            return original(self)

        load_or_resume.__doc__ = original.__doc__
        runner_module.Runner.load_or_resume = load_or_resume


def apply_compat():
    """Apply every patch (idempotent)."""
    _register_safe_globals()
    _patch_checkpoint_loading()
    _patch_checkpoint_saving()
    _patch_resume()
    _patch_cpu_distributed()
    _patch_fsdp()
    _patch_installed_path_lookup()


apply_compat()
