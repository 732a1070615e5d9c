"""Inference APIs: the interactive :class:`SAM3Predictor` and low-precision inference."""
from ..utils.inference_precision import resolve_dtype, set_inference_dtype
from .mixed_precision_sam3 import MixedPrecisionSAM3
from .sam3_predictor import SAM3Predictor

__all__ = ['SAM3Predictor', 'MixedPrecisionSAM3', 'resolve_dtype', 'set_inference_dtype']
