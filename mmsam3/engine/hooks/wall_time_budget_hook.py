"""WallTimeBudgetHook: end an iteration-based training run after a fixed wall time.

For comparisons at equal compute (e.g. a distilled student against one trained from scratch):
every run gets the same seconds of training, counted from its first iteration, whatever its
speed per iteration. The loop stops after the iteration that crosses the budget and the weights
of that iteration are saved through the run's ``CheckpointHook`` (``iter_N.pth`` and the
``last_checkpoint`` pointer, as at the end of a normal run).
"""
import time

from mmengine.hooks import CheckpointHook, Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class WallTimeBudgetHook(Hook):
    """Args:
        seconds (float): training time allowed (> 0).
        clock (str): ``'wall'`` (elapsed time) or ``'process'`` (CPU time of the training
            process, all its threads: equal compute for runs sharing a busy machine).
    """
    priority = 'VERY_LOW'

    def __init__(self, seconds: float, clock: str = 'wall'):
        if not seconds or seconds <= 0:
            raise ValueError(f'WallTimeBudgetHook: seconds must be > 0, got {seconds}')
        if clock not in ('wall', 'process'):
            raise ValueError(f"WallTimeBudgetHook: clock must be 'wall' or 'process', got "
                             f'{clock!r}')
        self.seconds = float(seconds)
        self.clock = clock
        self._now = time.perf_counter if clock == 'wall' else time.process_time
        self._start = None

    def before_train(self, runner) -> None:
        self._start = None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._start is None:
            self._start = self._now()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        elapsed = self._now() - self._start
        if elapsed >= self.seconds:
            runner.logger.info(f'WallTimeBudgetHook: {elapsed:.1f} s ({self.clock}) of training reached the '
                               f'{self.seconds:.0f} s budget at iteration {runner.iter + 1}')
            runner.train_loop.stop_training = True
            saver = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
            if saver is not None:
                saver._save_checkpoint(runner)
            else:
                runner.save_checkpoint(runner.work_dir, f'iter_{runner.iter + 1}.pth')
