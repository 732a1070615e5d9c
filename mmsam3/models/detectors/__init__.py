"""Detectors of mmsam3."""
from .sam3 import SAM3
from .sam3_distiller import SAM3Distiller
from .sam3_interactive import SAM3Interactive

__all__ = ['SAM3', 'SAM3Distiller', 'SAM3Interactive']
