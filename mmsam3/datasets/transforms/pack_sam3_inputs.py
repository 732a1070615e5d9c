"""PackSAM3Inputs: mmdet's ``PackDetInputs`` plus the SAM 3 prompt metainfo.

Output (``dict(inputs, data_samples)``):
- ``inputs``: uint8 tensor (3, H, W) (BGR as loaded; the data preprocessor converts to RGB and
  normalises with mean = std = 127.5);
- ``data_samples``: ``DetDataSample`` with
  - ``gt_instances.bboxes`` (N, 4) xyxy in network-input pixels (``HorizontalBoxes``; mmdet's
    ``DetDataPreprocessor(boxtype2tensor=True)`` turns them into tensors), ``labels`` (N,) int64
    contiguous category index, ``masks`` (``BitmapMasks`` (N, H, W)) when loaded;
  - metainfo: the usual mmdet keys plus ``texts`` (list[str], P), ``prompt_labels`` (list[int],
    P), optional ``prompt_boxes`` (list of float32 (K, 4) xyxy) / ``prompt_box_labels`` (list of
    int64 (K,)), ``text`` (what mmdet's DetInferencer passes), ``pad_param`` / ``pad_shape``.

When ``texts`` is absent but ``text`` is given (DetInferencer / Grounding-DINO style: a list,
or a str such as ``'cat . dog .'``, split by :func:`mmsam3.utils.parse_text_prompt`), ``texts`` is
derived from it and ``prompt_labels`` defaults to ``range(len(texts))``.
"""
from typing import Sequence

import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

from ...utils.text_prompt import parse_text_prompt

SAM3_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                  'flip_direction', 'pad_shape', 'pad_param', 'texts', 'prompt_labels',
                  'prompt_boxes', 'prompt_box_labels', 'text', 'custom_entities', 'unlabeled')


@TRANSFORMS.register_module()
class PackSAM3Inputs(PackDetInputs):
    """Args:
        meta_keys (Sequence[str]): keys copied into the sample metainfo when present; default
            ``SAM3_META_KEYS``.
    """

    def __init__(self, meta_keys: Sequence[str] = SAM3_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: dict) -> dict:
        if 'texts' not in results and results.get('text') is not None:
            results['texts'] = parse_text_prompt(results['text'])
        if 'texts' in results:
            results['texts'] = list(results['texts'])
            if 'prompt_labels' not in results:
                results['prompt_labels'] = list(range(len(results['texts'])))
            results['prompt_labels'] = [int(x) for x in results['prompt_labels']]
        if results.get('prompt_boxes') is not None:
            results['prompt_boxes'] = [
                torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
                for b in results['prompt_boxes']]
            labels = results.get('prompt_box_labels')
            if labels is None:
                labels = [torch.ones(len(b), dtype=torch.long) for b in results['prompt_boxes']]
            results['prompt_box_labels'] = [
                torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in labels]
        return super().transform(results)
