"""Detectors of mmsam3."""
from .sam3 import SAM3

__all__ = ['SAM3']
