"""dense_heads of mmsam3."""
from .sam3_head import SAM3Head  # noqa: F401
from .sam3_mask_head import SAM3MaskHead, SAM3PixelDecoder  # noqa: F401
from .sam3_scoring_head import SAM3ScoringHead  # noqa: F401
from .sam_mask_decoder import SAMMaskDecoder  # noqa: F401
from .sam3_interactive_head import SAM3InteractiveHead, fill_small_holes  # noqa: F401
