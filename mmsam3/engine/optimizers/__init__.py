"""Optimizer constructors, optimizer wrappers and parameter schedulers of mmsam3."""
from .inverse_sqrt_lr import (InverseSquareRootLR, InverseSquareRootParamScheduler,
                              inverse_sqrt_factor)
from .safe_optim_wrapper import SafeAmpOptimWrapper, SafeOptimWrapper, make_optim_wrapper_safe
from .sam3_optim_constructor import (OFFICIAL_PARAMWISE_CFG, SAM3OptimWrapperConstructor,
                                     layer_decay_lr_scale, sam3_param_options)

__all__ = [
    'SAM3OptimWrapperConstructor', 'layer_decay_lr_scale', 'sam3_param_options',
    'OFFICIAL_PARAMWISE_CFG', 'InverseSquareRootLR', 'InverseSquareRootParamScheduler',
    'inverse_sqrt_factor', 'SafeOptimWrapper', 'SafeAmpOptimWrapper', 'make_optim_wrapper_safe'
]
