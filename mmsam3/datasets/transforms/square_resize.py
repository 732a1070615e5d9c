"""Square-resize scales of the official SAM 3 training pipeline.

The official ``RandomResizeAPI(sizes=get_random_resize_scales(1008, 480), square=True)`` resizes an
image to s x s (aspect ratio NOT kept) with s drawn from ``range(ceil32(480), 1008 + 1, 32)`` =
{480, 512, ..., 992}. mmdet's ``RandomChoiceResize(scales=[(s, s), ...], keep_ratio=False)``
does the same and keeps ``gt_bboxes`` / ``gt_masks`` consistent, so no new transform is needed::

    dict(type='RandomChoiceResize', scales=sam3_train_scales(1008), keep_ratio=False)
"""
import math
from typing import List, Tuple


def sam3_train_scales(size: int = 1008, min_size: int = 480,
                      step: int = 32) -> List[Tuple[int, int]]:
    """``[(s, s)]`` for s in ``range(step * ceil(min_size / step), size + 1, step)``.

    ``size=1008`` gives 17 scales 480..992 (1008 itself is not a multiple of 32 above 480, so it
    is never drawn, as in the official configs). Small variants (504 / 672) may lower ``min_size``.
    """
    if min_size > size:
        raise ValueError(f'min_size ({min_size}) must be <= size ({size})')
    start = int(step * math.ceil(min_size / step))
    scales = [(s, s) for s in range(start, size + 1, step)]
    if not scales:
        raise ValueError(f'no scale in [{min_size}, {size}] with step {step}')
    return scales
