"""``type='MixedPrecisionSAM3'``: a SAM3 detector that runs its forwards in bf16 / fp16.

For code that builds the model from a config by itself, such as mmdet's ``DetInferencer``::

    _base_ = './sam3/sam3_vit-l_zeroshot_coco.py'
    model = dict(type='MixedPrecisionSAM3', test_cfg=dict(dtype='bfloat16'))

It builds the plain ``SAM3`` from the same keyword arguments and applies
:func:`mmsam3.utils.inference_precision.set_inference_dtype` with ``test_cfg.dtype``; the state
dict is SAM3's, so every checkpoint loads unchanged. mmsam3's own tools (``tools/test.py --dtype``,
``tools/demo.py --dtype``, :class:`SAM3Predictor`) read ``test_cfg.dtype`` of a plain SAM3
config themselves.
"""
from mmdet.registry import MODELS

from ..utils.inference_precision import resolve_dtype, set_inference_dtype


@MODELS.register_module()
def MixedPrecisionSAM3(detector_type: str = 'SAM3', **kwargs):
    """Build ``detector_type`` from ``kwargs``; run it in ``kwargs['test_cfg']['dtype']``.

    Returns the detector (a ``SAM3`` instance, with ``inference_dtype`` set).
    """
    dtype = resolve_dtype((kwargs.get('test_cfg') or {}).get('dtype', None))
    model = MODELS.build(dict(kwargs, type=detector_type))
    return set_inference_dtype(model, dtype)
