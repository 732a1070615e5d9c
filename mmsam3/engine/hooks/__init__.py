"""Hooks of mmsam3."""
from .training_health_hook import (NonFiniteCheckpointError, TrainingDivergedError,
                                   TrainingHealthHook, non_finite_tensors)
from .wall_time_budget_hook import WallTimeBudgetHook

__all__ = [
    'TrainingHealthHook', 'TrainingDivergedError', 'NonFiniteCheckpointError',
    'non_finite_tensors', 'WallTimeBudgetHook'
]
