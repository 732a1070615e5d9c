"""Peak memory of one training step, estimated without allocating it.

:func:`estimate_train_memory` builds the config's model and optimizer under torch's
``FakeTensorMode`` (tensors with shapes and dtypes, no storage) and runs one training step
(data pre-processing, forward in the config's precision, backward, gradient clipping, the
optimizer step) inside ``torch.distributed._tools.mem_tracker.MemTracker``, which attributes
every storage to parameters, buffers, gradients, activations, temporaries or optimizer state and
records each module's peak. Nothing of the model's real size is allocated, so the full 840M
model at 1008 px is estimated on a laptop in about a minute.

What the tracked step includes: the config's ``batch_size`` (per GPU), image size
(``model.backbone.img_size``), ``with_cp`` switches (checkpointed blocks recompute their
activations in backward), ``frozen_modules`` and LoRA (no gradients or optimizer state for frozen
weights), a mask head or not, and bf16 / fp16 autocast for ``AmpOptimWrapper`` (CPU autocast
stands in for CUDA autocast: both run matmuls and convolutions in the low precision).

What an estimate on CPU tensors cannot see, and what :class:`MemoryEstimate` corrects:

* CUDA allocator rounding: every block is rounded up to 512 bytes. Corrected (``target='cuda'``
  rounds each tracked storage the same way).
* Allocator caching and fragmentation, cuBLAS / cuDNN workspaces, the CUDA context: not tensors,
  so not tracked. ``torch.cuda.max_memory_allocated`` does not count them either; the GPU budget
  check adds :data:`CUDA_CONTEXT_GIB` plus :data:`FRAGMENTATION` of the peak as headroom.
* The attention kernel: a GPU's flash / memory-efficient attention keeps only the output and a
  log-sum-exp row per query, with or without dropout; CPU attention with dropout falls back to
  the math path, which keeps the (queries x keys) scores, probabilities and dropout mask (the
  fusion encoder's image self-attention at 1008 px: 1.6 GiB per layer and prompt pair). For
  ``target='cuda'`` those calls run through CPU's fused kernel instead (same memory as the
  GPU's); ``attention_math_mib`` is what the math path would have kept, summed over calls.
* FSDP (``world_size`` > 1): parameters, gradients and optimizer state of one GPU are 1/N of the
  totals, plus the gathered (unsharded) parameters of the two largest wrap units (the one running
  and the one prefetched) and the unsharded gradients of one unit before its reduce-scatter. The
  peak is taken over every snapshot the tracker recorded (module entries, exits and peaks), each
  rescaled this way, because sharding can move the peak from the optimizer step into backward.
"""
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import nn

__all__ = ['MemoryEstimate', 'estimate_train_memory', 'gpu_gib', 'snapshot_mib',
           'skip_grad_hooks_of_frozen', 'CUDA_CONTEXT_GIB', 'FRAGMENTATION',
           'CATEGORIES']

MIB = 2**20
GIB = 2**30
# What a GPU needs beyond max_memory_allocated: CUDA context + cuBLAS/cuDNN workspaces (about
# 0.5-0.8 GiB on recent drivers) and caching-allocator fragmentation (10 % is typical for
# transformer training with varying prompt counts).
CUDA_CONTEXT_GIB = 0.75
FRAGMENTATION = 0.10
CUDA_BLOCK = 512  # c10 CUDACachingAllocator's minimum block size

CATEGORIES = ('Parameter', 'Buffer', 'Gradient', 'Optstate', 'Activation', 'Temp', 'Other')
SHARDED = ('Parameter', 'Gradient', 'Optstate')


@dataclass
class MemoryEstimate:
    """The estimate of one training step on one GPU (sizes in MiB)."""
    peak_mib: float  # what torch.cuda.max_memory_allocated would report (target 'cuda')
    breakdown: Dict[str, float]  # categories at the peak
    modules: List[tuple]  # (name, peak MiB, params M, trainable M) for the top-level children
    params_m: float
    trainable_m: float
    batch_size: int
    input_size: int
    num_prompts: int
    precision: str
    world_size: int = 1
    target: str = 'cuda'
    checkpointing: List[str] = field(default_factory=list)
    frozen: List[str] = field(default_factory=list)
    lora: bool = False
    with_masks: bool = True
    attention_kernels: Dict[str, int] = field(default_factory=dict)
    attention_math_mib: float = 0.0
    fsdp_unit_mib: float = 0.0
    fsdp_peaks: Dict[int, float] = field(default_factory=dict)  # GPUs -> peak MiB per GPU
    real_fallbacks: List[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: List[str] = field(default_factory=list)

    @property
    def gpu_gib(self):
        """Memory a GPU must have for this step: peak + fragmentation + context / workspaces."""
        return gpu_gib(self.peak_mib)


def gpu_gib(peak_mib: float) -> float:
    """GiB a GPU needs for a step whose allocated peak is ``peak_mib``."""
    return peak_mib * (1 + FRAGMENTATION) / 1024 + CUDA_CONTEXT_GIB


_REAL_FALLBACK_NUMEL = 2**22  # elements: data-dependent ops up to this size run on zeros


def _realise(x):
    """A real tensor for a fake one (zeros, or its constant), for data-dependent ops."""
    from torch._subclasses.fake_tensor import FakeTensor
    if isinstance(x, FakeTensor):
        if x.constant is not None:
            return x.constant
        return torch.zeros(x.shape, dtype=x.dtype)
    return x


class _StepDispatch:
    """A TorchDispatchMode (built lazily) around the tracked step that

    * counts the attention kernels it dispatches;
    * runs ops whose output shape or value depends on tensor data (``nonzero``, boolean
      indexing, ``item``) on real zeros when fake tensors cannot: in a SAM 3 step these are
      target bookkeeping (which prompts have boxes, one soft target per query), small and
      mostly on real target tensors already.
    """

    def __new__(cls):
        from torch._subclasses.fake_tensor import (DataDependentOutputException,
                                                   DynamicOutputShapeException)
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves, tree_map

        class StepDispatch(TorchDispatchMode):

            def __init__(self):
                super().__init__()
                self.kernels = {}
                self.real_fallbacks = set()

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = func.overloadpacket.__name__
                if 'scaled_dot_product' in name:
                    self.kernels[name] = self.kernels.get(name, 0) + 1
                try:
                    return func(*args, **kwargs)
                except (DataDependentOutputException, DynamicOutputShapeException):
                    numel = sum(t.numel() for t in tree_leaves((args, kwargs))
                                if isinstance(t, torch.Tensor))
                    if numel > _REAL_FALLBACK_NUMEL:
                        raise
                    self.real_fallbacks.add(name)
                    return func(*tree_map(_realise, args), **tree_map(_realise, kwargs))

        return StepDispatch()


class _FusedAttentionAsOnGPU:
    """``F.scaled_dot_product_attention`` with dropout runs CPU's math path, which keeps the
    (queries x keys) scores, probabilities and dropout mask for backward; a GPU runs it fused
    (flash / memory-efficient kernels keep the output and one log-sum-exp per query). For a CUDA
    estimate such calls run without dropout, which takes CPU's fused kernel (the same memory
    as the GPU's); ``math_mib`` adds up what the math path would have kept."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.calls = 0
        self.math_mib = 0.0

    def __enter__(self):
        import torch.nn.functional as F
        self.original = F.scaled_dot_product_attention
        if not self.enabled:
            return self
        original = self.original

        def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, *args, **kwargs):
            if dropout_p and torch.is_grad_enabled():
                self.calls += 1
                scores = query.shape[:-1].numel() * key.shape[-2]
                self.math_mib += 3 * scores * query.element_size() / MIB
                dropout_p = 0.0
            return original(query, key, value, attn_mask, dropout_p, *args, **kwargs)

        F.scaled_dot_product_attention = sdpa
        return self

    def __exit__(self, *exc):
        import torch.nn.functional as F
        F.scaled_dot_product_attention = self.original


def _round_storages_to_cuda_blocks():
    """Make MemTracker count each storage as the CUDA caching allocator would (512 B blocks)."""
    from torch.distributed._tools import mem_tracker

    original = mem_tracker._WeakRefInfo._calculate_mem_consumed

    def rounded(self):
        size = self.size * self.element_size
        return math.ceil(size / CUDA_BLOCK) * CUDA_BLOCK if size else 0

    mem_tracker._WeakRefInfo._calculate_mem_consumed = rounded
    return lambda: setattr(mem_tracker._WeakRefInfo, '_calculate_mem_consumed', original)


def _category(key):
    return getattr(key, 'value', str(key))


def snapshot_mib(snap):
    """{category: MiB} of one device's tracker snapshot."""
    out = {c: 0.0 for c in CATEGORIES}
    for key, value in snap.items():
        name = _category(key)
        if name in out:
            out[name] += value / MIB
    return out


def _sharded_total(cats, world_size, unit_mib):
    total = sum(v / world_size if k in SHARDED else v for k, v in cats.items())
    return total + (unit_mib if world_size > 1 else 0.0)


def _as_fsdp_runs_it(cfg):
    """An FSDP config as the step runs under FSDPStrategy: the strategy's activation
    checkpointing of the wrap units counts as ``with_cp`` in every stack, and a bf16 / fp16
    ``mixed_precision.param_dtype`` as autocast in that dtype (FSDP computes in it)."""
    strategy = cfg.get('strategy') or {}
    if strategy.get('type') != 'FSDPStrategy':
        return cfg
    cfg = copy.deepcopy(cfg)
    if strategy.get('activation_checkpointing'):
        for key in ('backbone', 'text_encoder', 'geometry_encoder', 'encoder', 'decoder'):
            if isinstance(cfg.model.get(key), dict):
                cfg.model[key].with_cp = True
    mp = (strategy.get('model_wrapper') or {}).get('mixed_precision') or {}
    if mp.get('param_dtype') in ('bfloat16', 'float16') and \
            cfg.optim_wrapper.get('type') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = mp['param_dtype']
    return cfg


def _optim_cfg_for_cpu(ow_cfg):
    """The optim wrapper config as a plain OptimWrapper and the autocast dtype it asked for."""
    ow_cfg = copy.deepcopy(ow_cfg)
    dtype = None
    if ow_cfg.get('type') == 'AmpOptimWrapper':
        dtype = getattr(torch, ow_cfg.get('dtype', None) or 'float16')
        ow_cfg.type = 'OptimWrapper'
    for key in ('dtype', 'loss_scale', 'use_fsdp'):  # AMP-only keys
        ow_cfg.pop(key, None)
    return ow_cfg, dtype


def _fsdp_units(model, wrap_classes):
    """(params, trainable params) of each FSDP wrap unit: each instance of ``wrap_classes``, and
    the root with whatever those do not cover."""
    units, covered = [], set()
    for module in model.modules():
        if wrap_classes and isinstance(module, wrap_classes):
            ps = [p for p in module.parameters() if id(p) not in covered]
            covered.update(id(p) for p in ps)
            units.append(ps)
    units.append([p for p in model.parameters() if id(p) not in covered])
    return [(sum(p.numel() for p in u), sum(p.numel() for p in u if p.requires_grad))
            for u in units]


def _fast_mem_tracker():
    """MemTracker whose per-operation peak update visits only the modules running now.

    torch's version walks every module it has seen after each operation, which makes a step of
    the full model (about 2,000 modules) take many minutes; the result is the same."""
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

    class FastMemTracker(MemTracker):

        def __init__(self):
            super().__init__()
            self._by_fqn, self._seen = {}, 0

        def _update_peak_stats(self, peak_state):
            curr = self._curr_mem_snap
            if len(self.memory_tracking) != self._seen:
                self._by_fqn = {}
                for stats in self.memory_tracking.values():
                    self._by_fqn.setdefault(stats.mod_fqn, []).append(stats)
                self._seen = len(self.memory_tracking)
            for fqn in self._mod_tracker.parents:
                for stats in self._by_fqn.get(fqn, ()):
                    if peak_state not in stats.snapshots:
                        continue
                    for dev, snap in curr.items():
                        if stats.local_peak.get(dev, 0) < snap[_TOTAL_KEY]:
                            stats.local_peak[dev] = snap[_TOTAL_KEY]
                            stats.snapshots[peak_state][-1][dev] = copy.deepcopy(snap)
            for dev, snap in curr.items():
                if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                    self._peak_mem[dev] = snap[_TOTAL_KEY]
                    self._peak_mem_snap[dev] = copy.deepcopy(snap)

    return FastMemTracker()


class _NoHook:

    def remove(self):
        pass


def skip_grad_hooks_of_frozen(tracker, model):
    """MemTracker hooks every parameter's gradient, which torch refuses for frozen ones; they
    never get a gradient, so mark them as hooked already."""
    for p in model.parameters():
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())


_BIG = 4096  # elements: factory calls at least this large build on the meta device


def _factory_numel(func, args, kwargs):
    if func is torch.linspace or func is torch.logspace:
        return int(args[2] if len(args) > 2 else kwargs.get('steps', 0))
    size = kwargs.get('size', args[0] if args else ())
    if isinstance(size, int):
        size = [a for a in args if isinstance(a, int)] if args else [size]
    try:
        return math.prod(int(s) for s in size)
    except TypeError:
        return 0


class _MetaForLargeTensors:
    """While building: factory calls of :data:`_BIG` elements or more create meta tensors (no
    storage), smaller ones real tensors, so constructors that read small values (drop-path
    rates, RoPE tables) still work. A TorchFunctionMode, built lazily."""

    def __new__(cls):
        from torch.overrides import TorchFunctionMode
        factories = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn,
                     torch.empty_strided}

        class MetaForLarge(TorchFunctionMode):

            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = dict(kwargs or {})
                if func in factories and kwargs.get('device') in (None, 'cpu') \
                        and _factory_numel(func, args, kwargs) >= _BIG:
                    kwargs['device'] = 'meta'
                return func(*args, **kwargs)

        return MetaForLarge()


def _fakeify_module(model, fake_mode):
    """Replace every parameter and buffer of ``model`` by a fake tensor of the same shape."""
    from torch._subclasses.fake_tensor import FakeTensor
    memo = {}
    cpu = torch.device('cpu')

    def fake(t):
        if isinstance(t, FakeTensor):
            return t
        if id(t) not in memo:
            memo[id(t)] = (fake_mode.fake_tensor_converter.from_meta_and_device(
                fake_mode, t.detach(), cpu) if t.is_meta else fake_mode.from_tensor(t.detach()))
        return memo[id(t)]

    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                key = ('p', id(p))
                if key not in memo:
                    memo[key] = nn.Parameter(fake(p), requires_grad=p.requires_grad)
                module._parameters[name] = memo[key]
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = fake(b)
    return model


def _fsdp_unit_mib(model, wrap_classes, param_bytes):
    units = _fsdp_units(model, wrap_classes)
    largest = sorted((n for n, _ in units), reverse=True)[:2]
    return (sum(largest) * param_bytes + max(t for _, t in units) * 4) / MIB


class _FixedMatching:
    """Hungarian matching needs real costs; on fake predictions each prompt's targets take the
    first queries in order (same index tensors, same sizes as a real match)."""

    def __enter__(self):
        from torch._subclasses.fake_tensor import FakeTensor

        from mmsam3.models.task_modules.assigners import sam3_hungarian_assigner as mod
        cls = mod.SAM3HungarianAssigner
        self.cls, self.original = cls, cls.match
        original = cls.match

        def match(assigner, pred_logits, pred_boxes, gt_boxes_padded, num_gts):
            if not isinstance(pred_boxes, FakeTensor):
                return original(assigner, pred_logits, pred_boxes, gt_boxes_padded, num_gts)
            # the cost matrix is still built, so its memory is counted
            counts = torch.as_tensor(num_gts).reshape(-1).tolist()
            kept = [i for i, n in enumerate(counts) if n > 0]
            if kept:
                assigner.cost_matrix(pred_logits.detach().float().reshape(
                    pred_boxes.shape[:2])[kept], pred_boxes.detach().float()[kept],
                    gt_boxes_padded[kept].float())
            num_queries = pred_boxes.shape[1]
            batch, src, tgt, off = [], [], [], 0
            for i, n in enumerate(counts):
                m = min(n, num_queries)
                batch += [i] * m
                src += list(range(m))
                tgt += list(range(off, off + m))
                off += n
            return mod.MatchIndices(*(torch.tensor(x, dtype=torch.long)
                                      for x in (batch, src, tgt)))

        cls.match = match
        return self

    def __exit__(self, *exc):
        self.cls.match = self.original


def estimate_train_memory(cfg, world_size: int = 1, num_prompts: int = 2,
                          batch_size: Optional[int] = None, target: str = 'cuda',
                          wrap_classes=None) -> MemoryEstimate:
    """Estimate the peak memory of one training step of ``cfg`` on one GPU.

    Args:
        cfg (Config): a training config (``model``, ``optim_wrapper``, ``train_dataloader``).
        world_size (int): GPUs the model is sharded over with FSDP (1: no sharding).
        num_prompts (int): text prompts per image (one box and mask target each).
        batch_size (int, optional): images per GPU; default the config's
            ``train_dataloader.batch_size`` (1 without one).
        target (str): 'cuda' rounds storages to the CUDA allocator's 512-byte blocks and takes
            out CPU-only attention score matrices; 'cpu' reports the CPU step as tracked.
        wrap_classes (tuple of types, optional): FSDP wrap units; default
            :func:`mmsam3.engine.fsdp.sam3_wrap_classes`.
    """
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    from torch._subclasses.fake_tensor import FakeTensorMode

    from .synthetic_train_batch import synthetic_train_batch
    if world_size < 1:
        raise ValueError(f'world_size must be >= 1, got {world_size}')
    if batch_size is None:
        batch_size = int((cfg.get('train_dataloader') or {}).get('batch_size', 1) or 1)
    cfg = _as_fsdp_runs_it(cfg)
    size = int(cfg.model.backbone.get('img_size', 1008))
    ow_cfg, amp_dtype = _optim_cfg_for_cpu(cfg.optim_wrapper)
    if target == 'cuda' and ow_cfg.get('optimizer'):
        # torch's optimizers default to the multi-tensor (foreach) step on CUDA tensors, whose
        # temporaries span a whole parameter group; on CPU tensors they loop per parameter.
        ow_cfg.optimizer.setdefault('foreach', True)
    t0 = time.perf_counter()
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    with _MetaForLargeTensors():
        model = MODELS.build(copy.deepcopy(cfg.model))
    model = _fakeify_module(model, fake_mode)
    model.train()
    wrapper = build_optim_wrapper(model, ow_cfg)
    with_masks = bool(getattr(model.bbox_head, 'with_masks', False))
    data = synthetic_train_batch(size, num_prompts, with_masks, batch_size)
    # No fake mode is active during the step: operations on fake weights and activations are
    # faked (FakeTensor's own dispatch), while the targets stay real, so the losses' bookkeeping
    # on target counts runs as in training.
    restore = _round_storages_to_cuda_blocks() if target == 'cuda' else (lambda: None)
    tracker, kernels = _fast_mem_tracker(), _StepDispatch()
    try:
        data = model.data_preprocessor(data, training=True)
        tracker.track_external(model, wrapper.optimizer, data['inputs'])
        skip_grad_hooks_of_frozen(tracker, model)
        fused = _FusedAttentionAsOnGPU(target == 'cuda')
        with tracker, kernels, _FixedMatching(), fused:
            with torch.autocast('cpu', dtype=amp_dtype, enabled=amp_dtype is not None):
                losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            loss.backward()
            clip = ow_cfg.get('clip_grad')
            if clip:
                params = [p for g in wrapper.optimizer.param_groups for p in g['params']
                          if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, **clip)
            wrapper.optimizer.step()
            wrapper.optimizer.zero_grad()
    finally:
        restore()
    device = torch.device('cpu')
    if wrap_classes is None:
        from mmsam3.engine.fsdp import sam3_wrap_classes
        wrap_classes = sam3_wrap_classes()
    param_bytes = 2 if amp_dtype is not None else 4
    unit_mib = _fsdp_unit_mib(model, wrap_classes, param_bytes)

    snapshots = [tracker.get_tracker_snapshot('peak')[device]]
    for stats in tracker.memory_tracking.values():
        for snaps in stats.snapshots.values():
            snapshots += [s[device] for s in snaps if device in s]
    math_mib = fused.math_mib

    def sharded(n):
        best = max(snapshots, key=lambda s: _sharded_total(snapshot_mib(s), n, unit_mib))
        cats = snapshot_mib(best)
        return _sharded_total(cats, n, unit_mib), cats

    peak, cats = sharded(world_size)
    fsdp_peaks = {n: sharded(n)[0] for n in sorted({1, 2, 4, 8, world_size})}
    breakdown = {k: (v / world_size if k in SHARDED else v) for k, v in cats.items()}
    if world_size > 1:
        breakdown['FSDP gathered units'] = unit_mib

    modules = []
    for name, child in model.named_children():
        stats = tracker.memory_tracking.get(child)
        if stats is None:
            continue
        local = max(stats.local_peak.values(), default=0) / MIB
        modules.append((name, local, sum(p.numel() for p in child.parameters()) / 1e6,
                        sum(p.numel() for p in child.parameters() if p.requires_grad) / 1e6))
    notes = []
    if amp_dtype is not None:
        notes.append(f'{cfg.optim_wrapper.type} ({amp_dtype}): CPU autocast stands in for CUDA '
                     'autocast')
    cps = sorted(k for k, v in cfg.model.items() if isinstance(v, dict) and v.get('with_cp'))
    head = cfg.model.get('bbox_head') or {}
    if isinstance(head.get('mask_head'), dict) and head['mask_head'].get('with_cp'):
        cps.append('bbox_head.mask_head')
    return MemoryEstimate(
        peak_mib=peak, breakdown=breakdown, modules=modules,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        trainable_m=sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        batch_size=batch_size, input_size=size, num_prompts=num_prompts,
        precision=str(amp_dtype).replace('torch.', '') if amp_dtype else 'float32',
        world_size=world_size, target=target, checkpointing=cps,
        frozen=list(cfg.model.get('frozen_modules', ()) or ()), lora=bool(cfg.model.get('lora')),
        with_masks=with_masks, attention_kernels=dict(kernels.kernels),
        attention_math_mib=math_mib, fsdp_unit_mib=unit_mib if world_size > 1 else 0.0,
        fsdp_peaks=fsdp_peaks, real_fallbacks=sorted(kernels.real_fallbacks),
        seconds=time.perf_counter() - t0, notes=notes)
