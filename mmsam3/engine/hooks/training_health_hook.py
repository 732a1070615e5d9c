"""Training-health guard: skip non-finite updates, roll back or stop on divergence.

The official trainer raises ``FloatingPointError`` on the first non-finite loss. Its README notes
that a few ODinW jobs diverge and that the last checkpoint before divergence is the one used. This
hook automates that:

1. ``before_train`` upgrades the runner's optimizer wrapper in place to its safe variant
   (:func:`~mmsam3.engine.optimizers.make_optim_wrapper_safe`; configs may also use
   ``SafeOptimWrapper`` / ``SafeAmpOptimWrapper`` directly). That wrapper skips every optimizer
   step whose loss or gradients are not finite, so a bad batch never changes the weights.
2. ``after_train_iter`` counts skipped steps. After ``max_consecutive_bad`` of them in a row:

   - ``on_repeated='rollback'``: reload model and optimizer state from the last checkpoint the
     ``CheckpointHook`` saved (``message_hub['last_ckpt']``, else ``work_dir/last_checkpoint``,
     else, if ``fallback_to_load_from``, the weights of ``load_from`` with a fresh optimizer
     state). Then multiply every lr by ``lr_factor``, including the schedulers' base values, so
     the reduction lasts. The iteration counter and the schedule position are *not* rewound.
     After ``max_rollbacks`` rollbacks the hook stops as below.
   - ``on_repeated='stop'``: raise :class:`TrainingDivergedError`, whose message names the last
     good checkpoint.
3. ``before_save_checkpoint`` refuses to write a checkpoint whose ``state_dict`` (or EMA state)
   holds a NaN / Inf. It raises :class:`NonFiniteCheckpointError`, so a bad weight never reaches
   disk and never becomes the rollback target.

Priority NORMAL: it runs after the optimizer step and before ``ParamSchedulerHook`` (LOW) and
``CheckpointHook`` (VERY_LOW) in ``after_train_iter``.
"""
import os.path as osp
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import (_load_checkpoint, _load_checkpoint_to_model,
                                        find_latest_checkpoint)

from mmdet.registry import HOOKS
from mmsam3.engine.optimizers.safe_optim_wrapper import _BAD, make_optim_wrapper_safe


class TrainingDivergedError(RuntimeError):
    """Training produced non-finite losses / gradients too often to continue."""


class NonFiniteCheckpointError(RuntimeError):
    """A checkpoint about to be saved holds non-finite weights."""


def non_finite_tensors(state_dict: dict) -> list:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or Inf."""
    return [k for k, v in state_dict.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


@HOOKS.register_module()
class TrainingHealthHook(Hook):
    """Guard against non-finite losses / gradients (see the module docstring).

    Args:
        max_consecutive_bad (int): consecutive skipped steps that trigger ``on_repeated``.
            Default: 5.
        on_repeated (str): ``'rollback'`` (default) or ``'stop'``.
        lr_factor (float): lr multiplier applied at each rollback. Default: 0.5.
        max_rollbacks (int): rollbacks allowed before stopping. Default: 3.
        fallback_to_load_from (bool): roll back to the ``load_from`` weights (fresh optimizer
            state) when no checkpoint was saved yet. Default: True.
        check_checkpoints (bool): refuse to save non-finite weights. Default: True.
    """

    priority = 'NORMAL'

    def __init__(self, max_consecutive_bad: int = 5, on_repeated: str = 'rollback',
                 lr_factor: float = 0.5, max_rollbacks: int = 3,
                 fallback_to_load_from: bool = True, check_checkpoints: bool = True):
        if on_repeated not in ('rollback', 'stop'):
            raise ValueError(f"on_repeated must be 'rollback' or 'stop', got {on_repeated!r}")
        if max_consecutive_bad < 1:
            raise ValueError(f'max_consecutive_bad must be >= 1, got {max_consecutive_bad}')
        if not 0 < lr_factor <= 1:
            raise ValueError(f'lr_factor must be in (0, 1], got {lr_factor}')
        self.max_consecutive_bad = int(max_consecutive_bad)
        self.on_repeated = on_repeated
        self.lr_factor = float(lr_factor)
        self.max_rollbacks = int(max_rollbacks)
        self.fallback_to_load_from = fallback_to_load_from
        self.check_checkpoints = check_checkpoints
        self.consecutive_bad = 0
        self.num_bad_steps = 0
        self.num_rollbacks = 0
        self.rollback_log = []  # (iter, checkpoint path) of each rollback

    # ------------------------------------------------------------------------------- training
    def before_train(self, runner) -> None:
        make_optim_wrapper_safe(runner.optim_wrapper)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        wrapper = runner.optim_wrapper
        pop = getattr(wrapper, 'pop_health_status', None)
        status = pop() if pop is not None else None
        if status is None:  # accumulating gradients: no step completed this iteration
            return
        if status == 'ok':
            self.consecutive_bad = 0
            return
        if status not in _BAD:  # fp16 loss-scale overflow: GradScaler handles it
            return
        self.consecutive_bad += 1
        self.num_bad_steps += 1
        runner.logger.warning(
            f'TrainingHealthHook: iter {runner.iter + 1}: {status.replace("_", " ")}; '
            f'optimizer step skipped ({self.consecutive_bad}/{self.max_consecutive_bad} '
            f'consecutive, {self.num_bad_steps} in total)')
        if self.consecutive_bad >= self.max_consecutive_bad:
            self._on_repeated(runner, status)

    def _on_repeated(self, runner, status: str) -> None:
        ckpt = self._last_checkpoint(runner)
        what = (f'{self.consecutive_bad} consecutive optimizer steps skipped for non-finite '
                f'loss / gradients (last: {status}) at iter {runner.iter + 1}')
        where = (f'last good checkpoint: {ckpt}' if ckpt else 'no checkpoint was saved yet')
        if self.on_repeated == 'stop':
            raise TrainingDivergedError(
                f'Training diverged: {what}; stopping (TrainingHealthHook on_repeated="stop"). '
                f'The weights were not updated by the bad steps; {where}. Lower the learning rate'
                ' or inspect the data of those iterations before resuming.')
        if self.num_rollbacks >= self.max_rollbacks:
            raise TrainingDivergedError(
                f'Training diverged: {what}, after {self.num_rollbacks} rollbacks '
                f'(max_rollbacks={self.max_rollbacks}); stopping. {where}.')
        model_only = False
        if ckpt is None and self.fallback_to_load_from and getattr(runner, '_load_from', None):
            ckpt, model_only = runner._load_from, True
        if ckpt is None:
            raise TrainingDivergedError(
                f'Training diverged: {what}; cannot roll back: no checkpoint in '
                f'{runner.work_dir} and no load_from. Save checkpoints more often '
                '(CheckpointHook interval) or use on_repeated="stop".')
        self._rollback(runner, ckpt, model_only)
        self.num_rollbacks += 1
        self.consecutive_bad = 0
        self.rollback_log.append((runner.iter + 1, ckpt))
        runner.logger.warning(
            f'TrainingHealthHook: {what}; rolled model{"" if model_only else " and optimizer"} '
            f'back to {ckpt} and multiplied the learning rates by {self.lr_factor} '
            f'(rollback {self.num_rollbacks}/{self.max_rollbacks}).')

    @staticmethod
    def _last_checkpoint(runner) -> Optional[str]:
        path = runner.message_hub.get_info('last_ckpt')
        if path and (not osp.isabs(path) or osp.exists(path)):
            return path
        return find_latest_checkpoint(runner.work_dir)

    def _rollback(self, runner, path: str, model_only: bool) -> None:
        checkpoint = _load_checkpoint(path, map_location='cpu')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        # Own checkpoints match exactly; `load_from` (e.g. a converted official file under a
        # LoRA model) may lack keys, as when it was loaded at the start.
        _load_checkpoint_to_model(model, checkpoint, strict=not model_only)
        wrapper = runner.optim_wrapper
        current = [(g['lr'], g.get('initial_lr')) for g in wrapper.optimizer.param_groups]
        if not model_only and 'optimizer' in checkpoint:
            wrapper.load_state_dict(checkpoint['optimizer'])
        else:
            wrapper.optimizer.state.clear()
        # Loading the optimizer restores the lrs saved with it (in new group dicts); keep the
        # schedule's current position instead, then apply the reduction.
        for g, (lr, initial) in zip(wrapper.optimizer.param_groups, current):
            g['lr'] = lr * self.lr_factor
            if initial is not None:
                g['initial_lr'] = initial * self.lr_factor
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for v in schedulers.values() for s in v]
        for scheduler in schedulers:
            if getattr(scheduler, 'param_name', None) == 'lr':
                scheduler.base_values = [v * self.lr_factor for v in scheduler.base_values]
                if hasattr(scheduler, '_last_value'):
                    scheduler._last_value = [v * self.lr_factor for v in scheduler._last_value]
        wrapper.zero_grad()

    # ---------------------------------------------------------------------------- checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_checkpoints:
            return
        bad = []
        for key in ('state_dict', 'ema_state_dict'):
            if isinstance(checkpoint.get(key), dict):
                bad += [f'{key}.{k}' for k in non_finite_tensors(checkpoint[key])]
        if bad:
            shown = ', '.join(bad[:5]) + (f' (+{len(bad) - 5} more)' if len(bad) > 5 else '')
            raise NonFiniteCheckpointError(
                f'Refusing to save a checkpoint at iter {runner.iter}: {len(bad)} tensors hold '
                f'NaN/Inf ({shown}). The weights diverged; resume from the last good checkpoint '
                f'({self._last_checkpoint(runner)}) with a lower learning rate.')
