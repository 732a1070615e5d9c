"""Utilities of mmsam3."""
from .compat import (UntrustedCheckpointError, safe_torch_load, trust_checkpoint,  # noqa: F401
                     trusted_checkpoints)
from .atomic_save import atomic_open, atomic_torch_save  # noqa: F401,E402
from .checkpoint_integrity import (checkpoint_read_error,  # noqa: F401,E402
                                   find_latest_readable_checkpoint)
from .dist_utils import close_distributed  # noqa: F401,E402
from .text_prompt import parse_text_prompt  # noqa: F401,E402
from .process_memory import proc_status_mib, reset_peak_rss  # noqa: F401,E402
