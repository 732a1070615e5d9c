"""Utilities of mmsam3."""
from .compat import (UntrustedCheckpointError, safe_torch_load, trust_checkpoint,  # noqa: F401
                     trusted_checkpoints)
from .dist_utils import close_distributed  # noqa: F401
