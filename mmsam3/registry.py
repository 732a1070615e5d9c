"""The ``mmsam3`` registry scope: children of mmdet's registries, holding nothing of their own.

mmsam3 registers its modules into mmdet's registries (configs say ``default_scope = 'mmdet'``).
A user config that inherits ``mmsam3::...`` gets ``_scope_='mmsam3'`` on every inherited dict with
a ``type``, and mmengine then builds those through the registry tree's ``mmsam3`` scope (after
importing ``mmsam3.registry``). These children give that scope a place in the tree: a lookup
there falls through to mmdet (and on to mmcv and mmengine), as it would from ``mmdet``, and their
``locations`` import mmsam3's modules so the scope works without an explicit ``import mmsam3``.
"""
from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

_NAMES = ('RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'DATASETS', 'DATA_SAMPLERS',
          'TRANSFORMS', 'MODELS', 'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'OPTIMIZERS',
          'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'METRICS',
          'EVALUATOR', 'TASK_UTILS', 'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS')


def _child(name):
    parent = getattr(mmdet_registry, name)
    return Registry(parent.name, parent=parent, scope='mmsam3', locations=['mmsam3'])


RUNNERS, RUNNER_CONSTRUCTORS, LOOPS, HOOKS, DATASETS, DATA_SAMPLERS, TRANSFORMS, MODELS, \
    MODEL_WRAPPERS, WEIGHT_INITIALIZERS, OPTIMIZERS, OPTIM_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS, \
    PARAM_SCHEDULERS, METRICS, EVALUATOR, TASK_UTILS, VISUALIZERS, VISBACKENDS, \
    LOG_PROCESSORS = (_child(name) for name in _NAMES)

__all__ = list(_NAMES)
