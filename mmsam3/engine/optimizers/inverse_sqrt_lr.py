"""Inverse-square-root learning-rate schedule with linear warm-up and linear cool-down.

mmengine 0.10.7 has no inverse-sqrt scheduler (LinearLR / Poly / Cosine / OneCycle / ... only),
so this reproduces the official SAM 3 ``InverseSquareRootParamScheduler`` (spec section 4.5). At
step ``s`` (0-based, stepped every iteration) of ``T = end - begin`` steps::

    lr = base_lr
    if s > warmup_steps:  lr /= sqrt((s + timescale - warmup_steps) / timescale)
    if warmup_steps:      lr *= min(1, s / warmup_steps)           # lr is 0 at step 0
    if cooldown_steps:    lr *= min(1, (T - s) / cooldown_steps)   # last step: 1 / cooldown

Official values: ``warmup_steps = cooldown_steps = timescale = 20``. Each param group scales its
own ``initial_lr`` (so per-component lrs and layer decay are kept).
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from mmdet.registry import PARAM_SCHEDULERS


def inverse_sqrt_factor(step: int, total_steps: float, warmup_steps: int, cooldown_steps: int,
                        timescale: int) -> float:
    """Multiplier of the base value at ``step`` (pure function of the formula above)."""
    factor = 1.0
    if step > warmup_steps:
        factor /= math.sqrt((step + timescale - warmup_steps) / timescale)
    if warmup_steps:
        factor *= min(1.0, step / warmup_steps)
    if cooldown_steps:
        factor *= min(1.0, (total_steps - step) / cooldown_steps)
    return factor


@PARAM_SCHEDULERS.register_module()
class InverseSquareRootParamScheduler(_ParamScheduler):
    """Inverse-sqrt decay with linear warm-up / cool-down of any optimizer option.

    Args:
        optimizer: wrapped optimizer.
        param_name (str): the option to schedule.
        warmup_steps (int): linear warm-up length (from 0). Default: 20.
        cooldown_steps (int): linear cool-down length before ``end``; needs a finite ``end``.
            Default: 20.
        timescale (int): decay timescale. Default: 20.
        begin, end, last_step, by_epoch, verbose: as in mmengine's schedulers; ``end - begin``
            is the total number of steps of the cool-down.
    """

    def __init__(self, optimizer, param_name: str, warmup_steps: int = 20,
                 cooldown_steps: int = 20, timescale: int = 20, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = False, verbose: bool = False):
        if cooldown_steps and end == INF:
            raise ValueError('InverseSquareRootParamScheduler: cooldown_steps needs a finite '
                             '`end` (the total number of steps)')
        if timescale <= 0:
            raise ValueError(f'timescale must be positive, got {timescale}')
        self.warmup_steps = int(warmup_steps)
        self.cooldown_steps = int(cooldown_steps)
        self.timescale = int(timescale)
        self.total_steps = end - begin
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, begin=0, end=INF, by_epoch=True, epoch_length=None,
                              **kwargs):
        """Epoch-based ``begin`` / ``end`` -> iterations; warm-up etc. stay in iterations."""
        assert by_epoch, 'Only epoch-based kwargs whose `by_epoch=True` can be converted'
        assert epoch_length is not None and epoch_length > 0, \
            f'`epoch_length` must be a positive integer, got {epoch_length}'
        begin = int(begin * epoch_length)
        if end != INF:
            end = int(end * epoch_length)
        return cls(*args, begin=begin, end=end, by_epoch=False, **kwargs)

    def _factor(self, step: int) -> float:
        return inverse_sqrt_factor(step, self.total_steps, self.warmup_steps,
                                   self.cooldown_steps, self.timescale)

    def _get_value(self):
        # Closed form from each group's base value: not chainable with other schedulers.
        factor = self._factor(self.last_step)
        return [base * factor for base in self.base_values]

    def _get_closed_form_value(self):
        return self._get_value()


@PARAM_SCHEDULERS.register_module()
class InverseSquareRootLR(LRSchedulerMixin, InverseSquareRootParamScheduler):
    """:class:`InverseSquareRootParamScheduler` of the learning rate (the official SAM 3
    schedule: ``dict(type='InverseSquareRootLR', warmup_steps=20, cooldown_steps=20,
    timescale=20, begin=0, end=max_iters, by_epoch=False)``)."""
