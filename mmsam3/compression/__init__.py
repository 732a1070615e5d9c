"""Compact SAM 3 students built from a teacher's weights (SAM3-Small).

* :mod:`.compression_plan` -- what a student keeps of its teacher (blocks, layers, heads,
  channels, queries), derived from the two models and checked for fit;
* :mod:`.layer_selection` -- which ViT blocks / layers to keep (global blocks always);
* :mod:`.block_ranking` -- scores of windowed ViT blocks on calibration images;
* :mod:`.width_importance` -- importance of heads, MLP and residual channels;
* :mod:`.state_dict_surgery` -- the student's state dict cut out of the teacher's;
* :mod:`.compressor` -- :func:`compress_sam3`, the whole step on built models.
"""
from .block_ranking import score_vit_blocks
from .compression_plan import CompressionError, CompressionPlan, make_plan
from .compressor import compress_sam3, load_teacher
from .layer_selection import evenly_spaced, select_vit_blocks
from .state_dict_surgery import compress_state_dict

__all__ = [
    'CompressionError', 'CompressionPlan', 'make_plan', 'compress_sam3', 'load_teacher',
    'evenly_spaced', 'select_vit_blocks', 'score_vit_blocks', 'compress_state_dict'
]
