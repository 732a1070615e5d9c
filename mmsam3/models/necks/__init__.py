"""necks of mmsam3."""
from .sam3_fpn import SAM3FPN  # noqa: F401
