"""A synthetic training batch for memory measurements and estimates (no dataset needed).

``synthetic_train_batch(size, num_prompts, with_masks, batch_size)`` returns what a SAM 3
dataloader yields: ``dict(inputs=[uint8 (3, size, size)] * batch_size, data_samples=[...])``,
each sample with ``num_prompts`` text prompts, one box per prompt and, with ``with_masks``, one
bitmap mask per prompt. Deterministic (seed 0).
"""
import numpy as np
import torch

__all__ = ['synthetic_train_batch']

PROMPTS = ('red apple', 'dog', 'car', 'person', 'tree', 'window', 'shoe', 'cat')


def _sample(rng, size, num_prompts, with_masks):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    texts = [PROMPTS[i % len(PROMPTS)] + ('' if i < len(PROMPTS) else f' {i}')
             for i in range(num_prompts)]
    boxes, masks = [], np.zeros((num_prompts, size, size), np.uint8)
    for i in range(num_prompts):
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        boxes.append([x0, y0, x0 + w, y0 + h])
        masks[i, y0:y0 + h, x0:x0 + w] = 1
    sample = DetDataSample(metainfo=dict(
        texts=texts, prompt_labels=list(range(num_prompts)), img_shape=(size, size),
        ori_shape=(size, size), pad_shape=(size, size), batch_input_shape=(size, size),
        scale_factor=(1.0, 1.0)))
    gt = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                      labels=torch.arange(num_prompts))
    if with_masks:
        gt.masks = BitmapMasks(masks, size, size)
    sample.gt_instances = gt
    img = torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8))
    return img, sample


def synthetic_train_batch(size: int, num_prompts: int, with_masks: bool, batch_size: int = 1):
    """``batch_size`` images of ``size`` x ``size`` with ``num_prompts`` prompts each."""
    rng = np.random.default_rng(0)
    pairs = [_sample(rng, size, num_prompts, with_masks) for _ in range(batch_size)]
    return dict(inputs=[img for img, _ in pairs], data_samples=[s for _, s in pairs])
