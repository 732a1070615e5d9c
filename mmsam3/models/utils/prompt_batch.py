"""The prompts of a batch: one entry per (image, prompt) pair, read from ``DetDataSample``\\ s.

A prompt is one noun phrase with the label it predicts and optional exemplar boxes. Samples carry
them in their metainfo: ``texts`` (list of phrases) or ``text`` (what mmdet's ``DetInferencer``
passes: a list, or one string such as ``'fish . shark'``), ``prompt_labels`` (default: the
prompt index), ``prompt_boxes`` (one ``(K, 4)`` xyxy array per prompt, network-input pixels) and
``prompt_box_labels`` (``(K,)``, 1 positive / 0 negative; default all positive).
"""
import warnings
from dataclasses import dataclass, field
import numbers
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from ...utils.text_prompt import parse_text_prompt

__all__ = ['PromptBatch', 'check_prompts_per_run']

@dataclass
class PromptBatch:
    """Flat prompts of a batch, in image order.

    Attributes:
        img_ids (list[int]): image index in the batch of each prompt.
        texts (list[str]): its noun phrase.
        labels (list[int]): the label its predictions get (and the category its targets have).
        boxes (list): its exemplar boxes, ``(K, 4)`` xyxy network-input pixels, or None.
        box_labels (list): ``(K,)`` labels of those boxes (1 positive, 0 negative), or None.
    """
    img_ids: List[int] = field(default_factory=list)
    texts: List[str] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    boxes: list = field(default_factory=list)
    box_labels: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_data_samples(cls, batch_data_samples) -> 'PromptBatch':
        batch = cls()
        for i, sample in enumerate(batch_data_samples):
            meta = sample.metainfo
            where = meta.get('img_path', i)
            texts = meta.get('texts', None)
            if texts is None:
                texts = meta.get('text', None)
            texts = [] if texts is None else parse_text_prompt(texts)
            labels = meta.get('prompt_labels', None)
            labels = list(range(len(texts))) if labels is None else [int(x) for x in labels]
            if len(labels) != len(texts):
                raise ValueError(f'{len(texts)} prompts but {len(labels)} prompt_labels in '
                                 f'sample {where}')
            boxes = meta.get('prompt_boxes', None)
            box_labels = meta.get('prompt_box_labels', None)
            for name, value in (('prompt_boxes', boxes), ('prompt_box_labels', box_labels)):
                if value is not None and len(value) != len(texts):
                    raise ValueError(f'{len(texts)} prompts but {len(value)} {name} entries in '
                                     f'sample {where}')
            for j, (text, label) in enumerate(zip(texts, labels)):
                if not isinstance(text, str):
                    raise TypeError(f'prompt {j} of image {i} is {type(text).__name__}, not str')
                batch.img_ids.append(i)
                batch.texts.append(text)
                batch.labels.append(label)
                batch.boxes.append(None if boxes is None else boxes[j])
                batch.box_labels.append(None if box_labels is None else box_labels[j])
        return batch

    def of_image(self, img_id: int) -> List[int]:
        """Indices of the prompts of one image."""
        return [p for p, i in enumerate(self.img_ids) if i == img_id]

    def unique_texts(self) -> Tuple[List[str], List[int]]:
        """Distinct phrases (first-seen order) and, per prompt, the index of its phrase."""
        unique = list(dict.fromkeys(self.texts))
        index = {t: k for k, t in enumerate(unique)}
        return unique, [index[t] for t in self.texts]

    def to_tensors(self, encode_texts: Callable[[List[str]], Tuple[Tensor, Tensor]],
                   batch_input_shape: Sequence[int],
                   device: Optional[torch.device] = None) -> Tuple[Tensor, ...]:
        """The prompt inputs of ``SAM3.forward_transformer`` (all after ``img_feats``).

        Args:
            encode_texts: distinct phrases -> ``(N, L, C)`` features and ``(N, L)`` padding
                mask (the text tower, a feature cache or a text graph); called once, on the
                distinct phrases only.

        Returns ``img_ids (B,)``, per-prompt ``txt_feats (B, L, C)`` and ``txt_mask (B, L)``, and
        the packed exemplar boxes of :meth:`pack_boxes`.
        """
        unique, text_ids = self.unique_texts()
        txt_feats, txt_mask = encode_texts(unique)
        text_ids = torch.as_tensor(text_ids, dtype=torch.long, device=txt_feats.device)
        boxes, box_labels, box_mask = self.pack_boxes(tuple(batch_input_shape), device)
        img_ids = torch.as_tensor(self.img_ids, dtype=torch.long, device=device)
        return img_ids, txt_feats[text_ids], txt_mask[text_ids], boxes, box_labels, box_mask

    def pack_boxes(self, batch_input_shape: Sequence[int],
                   device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Exemplar boxes as padded tensors, the form the prompt stages take.

        Returns ``boxes (N, K, 4)`` normalised cxcywh, ``box_labels (N, K)`` long and
        ``box_mask (N, K)`` bool (True = padding), ``K`` the most boxes of any prompt (may be 0).
        A box reaching outside the input is clipped to it (warning); one with no area left, or
        with NaN / inf coordinates, raises ``ValueError``.
        """
        h, w = batch_input_shape
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
        per_prompt = []
        for p, (b, bl) in enumerate(zip(self.boxes, self.box_labels)):
            if b is None or len(b) == 0:
                per_prompt.append(None)
                continue
            b = torch.as_tensor(b, dtype=torch.float32, device=device).reshape(-1, 4)
            if not torch.isfinite(b).all():
                raise ValueError(f'prompt {p}: exemplar boxes contain NaN/inf: {b.tolist()}')
            clipped = torch.minimum(torch.maximum(b, torch.zeros_like(scale)), scale)
            if (clipped[:, 2] <= clipped[:, 0]).any() or (clipped[:, 3] <= clipped[:, 1]).any():
                raise ValueError(
                    f'prompt {p}: exemplar box(es) {b.tolist()} (xyxy, input pixels) have no '
                    f'area inside the {w}x{h} input image')
            if not torch.equal(clipped, b):
                warnings.warn(f'prompt {p}: exemplar boxes clipped to the {w}x{h} input image')
            bl = (torch.ones(len(b), dtype=torch.long, device=device) if bl is None else
                  torch.as_tensor(bl, device=device).long().reshape(-1))
            if len(bl) != len(b):
                raise ValueError(f'prompt {p}: {len(b)} exemplar boxes but {len(bl)} labels')
            per_prompt.append((bbox_xyxy_to_cxcywh(clipped / scale), bl))
        num = max([len(x[0]) for x in per_prompt if x is not None] + [0])
        n = len(per_prompt)
        boxes = torch.zeros(n, num, 4, device=device)
        labels = torch.zeros(n, num, dtype=torch.long, device=device)
        mask = torch.ones(n, num, dtype=torch.bool, device=device)
        for p, item in enumerate(per_prompt):
            if item is not None:
                k = len(item[0])
                boxes[p, :k], labels[p, :k], mask[p, :k] = item[0], item[1], False
        return boxes, labels, mask


def check_prompts_per_run(value, name: str = 'prompts_per_run') -> Optional[int]:
    """``value`` if it is None or an int >= 1 (how many prompts one run of the prompt stages
    takes), else a ``ValueError`` naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f'{name} must be None or an int >= 1, got {value!r}')
    return int(value)
