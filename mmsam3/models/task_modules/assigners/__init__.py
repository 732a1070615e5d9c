"""Matchers (assigners) and match costs of SAM 3 training, registered in ``TASK_UTILS``."""
from .match_costs import BinaryFocalLogitCost, CxcywhBoxL1Cost, CxcywhGIoUCost
from .sam3_hungarian_assigner import (MatchIndices, NonFiniteCostWarning,
                                      SAM3HungarianAssigner)
from .sam3_one_to_many_assigner import SAM3OneToManyAssigner

__all__ = [
    'BinaryFocalLogitCost', 'CxcywhBoxL1Cost', 'CxcywhGIoUCost', 'MatchIndices',
    'NonFiniteCostWarning', 'SAM3HungarianAssigner', 'SAM3OneToManyAssigner'
]
