"""Optimizer wrappers that never apply a non-finite update.

mmengine 0.10.7's ``BaseModel.train_step`` calls ``optim_wrapper.update_params(loss)``, which
runs ``backward`` and then, when an accumulation cycle is complete, ``step`` + ``zero_grad``.
:class:`SafeOptimWrapperMixin` hooks into that flow:

* ``update_params`` checks the loss before backward. The flag is all-reduced, so every rank
  agrees. Backward still runs on a bad loss: DDP's reducer expects it after every forward
  (skipping it breaks the next iteration). The NaN gradients are all-reduced to every rank and the
  step below is skipped on all of them.
* ``step`` unscales AMP gradients, then checks that every gradient is finite (again all-reduced).
  It applies gradient clipping and the optimizer step only when both the loss and the gradients
  were finite; otherwise it skips them. ``zero_grad`` still runs, so nothing leaks into the next
  step.
* fp16 AMP with a dynamic loss scale: non-finite gradients with a finite loss are ordinary scale
  overflows. ``GradScaler.update`` backs the scale off and the step reports ``'overflow'``, which
  :class:`~mmsam3.engine.hooks.TrainingHealthHook` does not count as bad. bf16 (the official
  dtype) or fp32 report ``'nonfinite_grad'``.

The outcome of the last completed step is in :attr:`health_status` (``None`` while accumulating,
then ``'ok'``, ``'nonfinite_loss'``, ``'nonfinite_grad'`` or ``'overflow'``). The training-health
hook reads it with :meth:`pop_health_status`. Any mmengine ``OptimWrapper`` instance can be
upgraded in place with :func:`make_optim_wrapper_safe`, which the hook does at ``before_train``.
"""
import weakref
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmdet.registry import OPTIM_WRAPPERS

_BAD = ('nonfinite_loss', 'nonfinite_grad')


def _all_ranks_true(flag: bool, device) -> bool:
    """``flag`` on every rank (a no-op reduction without torch.distributed)."""
    t = torch.tensor(0.0 if flag else 1.0, device=device)
    all_reduce(t, op='sum')
    return bool(t.item() == 0)


class SafeOptimWrapperMixin:
    """Skip the optimizer step on a non-finite loss or gradient (see the module docstring)."""

    # Class-level defaults so that an instance upgraded by `make_optim_wrapper_safe` works too.
    health_status: Optional[str] = None
    num_skipped_steps: int = 0
    _pending_bad_loss: bool = False

    def update_params(self, loss: torch.Tensor, step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        if not _all_ranks_true(bool(torch.isfinite(loss.detach()).all()), loss.device):
            self._pending_bad_loss = True
        loss = self.scale_loss(loss)
        self.backward(loss)
        if self.should_update():
            self.step(**step_kwargs)
            self.zero_grad(**zero_kwargs)

    def _trainable_grads(self):
        return [p.grad for group in self.optimizer.param_groups for p in group['params']
                if p.grad is not None]

    def grads_finite(self) -> bool:
        """Whether every gradient held by the optimizer is finite, on every rank."""
        grads = self._trainable_grads()
        if not grads:
            return True
        device = grads[0].device
        # One fused norm per tensor, then a single reduction: a NaN / Inf anywhere shows up in it.
        norms = torch._foreach_norm(grads) if hasattr(torch, '_foreach_norm') else \
            [g.norm() for g in grads]
        local_ok = bool(torch.isfinite(torch.stack([n.to(device).float() for n in norms])).all())
        return _all_ranks_true(local_ok, device)

    def _fp16_dynamic_scaling(self) -> bool:
        scaler = getattr(self, 'loss_scaler', None)
        if scaler is None or not scaler.is_enabled():
            return False
        return getattr(self, 'cast_dtype', None) in (None, torch.float16)

    def step(self, **kwargs) -> None:
        scaler = getattr(self, 'loss_scaler', None)
        scaler = scaler if scaler is not None and scaler.is_enabled() else None
        if scaler is not None:
            # Records found_inf for `update`; gradients are now in their true scale.
            scaler.unscale_(self.optimizer)
        bad_loss = self._pending_bad_loss
        self._pending_bad_loss = False
        grads_ok = self.grads_finite()
        if grads_ok and not bad_loss:
            if self.clip_grad_kwargs:
                self._clip_grad()
            if scaler is not None:
                scaler.step(self.optimizer, **kwargs)
                scaler.update(getattr(self, '_scale_update_param', None))
            else:
                self.optimizer.step(**kwargs)
            self.health_status = 'ok'
            return
        if scaler is not None:
            # No optimizer step; `update` backs the scale off when unscale_ found inf / NaN.
            scaler.update(getattr(self, '_scale_update_param', None))
        if bad_loss:
            self.health_status = 'nonfinite_loss'
        elif self._fp16_dynamic_scaling():
            self.health_status = 'overflow'
        else:
            self.health_status = 'nonfinite_grad'
        self.num_skipped_steps += 1

    def pop_health_status(self) -> Optional[str]:
        """The outcome of the last step since the previous call (None: no step completed)."""
        status, self.health_status = self.health_status, None
        return status


@OPTIM_WRAPPERS.register_module()
class SafeOptimWrapper(SafeOptimWrapperMixin, OptimWrapper):
    """``OptimWrapper`` that skips non-finite updates (see :mod:`.safe_optim_wrapper`)."""


@OPTIM_WRAPPERS.register_module()
class SafeAmpOptimWrapper(SafeOptimWrapperMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` that skips non-finite updates (see :mod:`.safe_optim_wrapper`)."""


_SAFE_CLASSES = {OptimWrapper: SafeOptimWrapper, AmpOptimWrapper: SafeAmpOptimWrapper}


def make_optim_wrapper_safe(optim_wrapper):
    """Upgrade an ``OptimWrapper`` (or subclass) instance in place to its safe variant.

    Returns the same object. ``OptimWrapperDict`` (several optimizers) is not supported.
    """
    if isinstance(optim_wrapper, SafeOptimWrapperMixin):
        return optim_wrapper
    if not isinstance(optim_wrapper, OptimWrapper):
        raise TypeError('the training-health guard needs an mmengine OptimWrapper (one '
                        f'optimizer), got {type(optim_wrapper).__name__}')
    cls = type(optim_wrapper)
    safe_cls = _SAFE_CLASSES.get(cls)
    if safe_cls is None:
        safe_cls = type(f'Safe{cls.__name__}', (SafeOptimWrapperMixin, cls), {})
        _SAFE_CLASSES[cls] = safe_cls
    optim_wrapper.__class__ = safe_cls
    if 'step' in vars(optim_wrapper):
        # mmengine's parameter schedulers replace `optim_wrapper.step` by an instance attribute
        # (a step counter around the method of the class at that time). Re-wrap the safe step,
        # or the old class's step would keep running.
        del optim_wrapper.step
        ref = weakref.ref(optim_wrapper)

        def step(*args, **kwargs):
            wrapper = ref()
            wrapper._global_step = getattr(wrapper, '_global_step', -1) + 1
            return type(wrapper).step(wrapper, *args, **kwargs)

        step._with_counter = True
        optim_wrapper.step = step
    return optim_wrapper
