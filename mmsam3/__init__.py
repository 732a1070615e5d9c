"""mmsam3: Meta's SAM 3 (Segment Anything with Concepts) as an MMDetection 3.x plugin.

Importing the package applies the compatibility layer for current PyTorch (see
:mod:`mmsam3.utils.compat`) and registers every mmsam3 module into mmdet's registries, so a
config only needs::

    custom_imports = dict(imports=['mmsam3'], allow_failed_imports=False)
    default_scope = 'mmdet'
"""
from .utils import compat  # noqa: F401  (must run before anything loads a checkpoint)
from .version import __version__

from . import datasets, engine, evaluation, models  # noqa: F401,E402  (registration)
from . import apis  # noqa: F401,E402  (SAM3Predictor; registers MixedPrecisionSAM3)

__all__ = ['__version__']
