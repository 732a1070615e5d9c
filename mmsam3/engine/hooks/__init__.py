"""Hooks of mmsam3."""
from .training_health_hook import (NonFiniteCheckpointError, TrainingDivergedError,
                                   TrainingHealthHook, non_finite_tensors)

__all__ = [
    'TrainingHealthHook', 'TrainingDivergedError', 'NonFiniteCheckpointError',
    'non_finite_tensors'
]
