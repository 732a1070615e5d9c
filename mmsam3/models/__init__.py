"""Model components, registered into ``mmdet.registry.MODELS`` / ``TASK_UTILS`` on import."""
from . import (backbones, dense_heads, detectors, language_models, layers, losses,  # noqa: F401
               necks, task_modules, utils)
