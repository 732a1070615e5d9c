"""Data transforms of mmsam3."""
from .build_prompt_queries import BuildPromptQueries
from .filter_crowds import FilterCrowds
from .filter_prompts import FilterPromptsWithTooManyTargets
from .mark_unlabeled import MarkUnlabeled
from .pack_sam3_inputs import SAM3_META_KEYS, PackSAM3Inputs
from .random_offset_pad import RandomOffsetPad
from .randomize_input_bbox import RandomizeInputBbox
from .square_resize import sam3_train_scales
from .text_query_to_visual import TextQueryToVisual
from .torchvision_resize import TorchvisionResize, torchvision_resize_uint8

__all__ = [
    'BuildPromptQueries', 'FilterCrowds', 'FilterPromptsWithTooManyTargets', 'MarkUnlabeled',
    'PackSAM3Inputs',
    'SAM3_META_KEYS', 'RandomOffsetPad', 'RandomizeInputBbox',
    'sam3_train_scales', 'TextQueryToVisual', 'TorchvisionResize', 'torchvision_resize_uint8'
]
