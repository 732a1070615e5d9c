"""Precomputed text-tower outputs for a fixed list of phrases.

On a device where the 354M-parameter text tower does not fit (or is not worth running), the
deployed model reads the features of known phrases from this file instead of the text graph.
The file is a plain ``.npz`` (no pickle): ``phrases`` (str), ``text_feats (N, L, C)`` float32,
``text_mask (N, L)`` bool (True = pad), and ``fingerprint``, the weights fingerprint of the text
tower that made them; a cache is refused by a deployed model whose text tower differs.
"""
import os.path as osp
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .export_graphs import TextTowerGraph
from .model_fingerprint import weights_fingerprint

__all__ = ['TextFeatureCache', 'text_tower_fingerprint']


def text_tower_fingerprint(model: nn.Module) -> str:
    """Fingerprint of the weights behind the ``text_tower`` graph of a ``SAM3`` model."""
    return weights_fingerprint(TextTowerGraph(model))


class TextFeatureCache:
    """Phrase -> ``(text_feats (L, C), text_mask (L,))`` of one text tower.

    Args:
        phrases (Sequence[str]): distinct phrases.
        text_feats (Tensor): ``(N, L, C)`` features, one row per phrase.
        text_mask (Tensor): ``(N, L)`` bool padding mask.
        fingerprint (str): :func:`text_tower_fingerprint` of the model that made them.
    """

    def __init__(self, phrases: Sequence[str], text_feats: Tensor, text_mask: Tensor,
                 fingerprint: str):
        phrases = [str(p) for p in phrases]
        if len(set(phrases)) != len(phrases):
            raise ValueError('text-feature cache: phrases must be distinct')
        if not len(phrases) == text_feats.shape[0] == text_mask.shape[0]:
            raise ValueError(f'text-feature cache: {len(phrases)} phrases but features for '
                             f'{text_feats.shape[0]} / masks for {text_mask.shape[0]}')
        self.phrases = phrases
        self.text_feats = torch.as_tensor(text_feats).float()
        self.text_mask = torch.as_tensor(text_mask).bool()
        self.fingerprint = str(fingerprint)
        self._index: Dict[str, int] = {p: i for i, p in enumerate(phrases)}

    def __len__(self) -> int:
        return len(self.phrases)

    def __contains__(self, phrase: str) -> bool:
        return phrase in self._index

    @classmethod
    @torch.no_grad()
    def from_model(cls, model: nn.Module, phrases: Sequence[str],
                   batch_size: int = 16) -> 'TextFeatureCache':
        """Encode ``phrases`` with the PyTorch model's tokenizer and text tower."""
        phrases = list(dict.fromkeys(str(p) for p in phrases))
        if not phrases or any(not p.strip() for p in phrases):
            raise ValueError('text-feature cache: give at least one non-empty phrase')
        feats, masks = [], []
        for start in range(0, len(phrases), batch_size):
            f, m = model.encode_texts(phrases[start:start + batch_size])
            feats.append(f.float().cpu())
            masks.append(m.cpu())
        return cls(phrases, torch.cat(feats), torch.cat(masks), text_tower_fingerprint(model))

    def lookup(self, phrases: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """``(N, L, C)`` features and ``(N, L)`` masks of ``phrases`` (all must be cached)."""
        missing = [p for p in phrases if p not in self._index]
        if missing:
            raise KeyError(f'phrases not in the text-feature cache: {missing}; add them with '
                           'tools/deployment/encode_texts.py or deploy the text_tower graph')
        idx = torch.as_tensor([self._index[p] for p in phrases], dtype=torch.long)
        return self.text_feats[idx], self.text_mask[idx]

    def save(self, path: str) -> None:
        np.savez(path, phrases=np.asarray(self.phrases, dtype=np.str_),
                 text_feats=self.text_feats.numpy(), text_mask=self.text_mask.numpy(),
                 fingerprint=np.asarray(self.fingerprint, dtype=np.str_))

    @classmethod
    def load(cls, path: str, expected_fingerprint: str = None) -> 'TextFeatureCache':
        """Read a cache; with ``expected_fingerprint`` refuse one made by another text tower."""
        if not osp.isfile(path):
            raise FileNotFoundError(f'text-feature cache not found: {path} (write one with '
                                    'tools/deployment/encode_texts.py)')
        with np.load(path, allow_pickle=False) as data:
            missing = {'phrases', 'text_feats', 'text_mask', 'fingerprint'} - set(data.files)
            if missing:
                raise ValueError(f'{path} is not a text-feature cache (missing {sorted(missing)})')
            cache = cls(list(data['phrases']), torch.from_numpy(data['text_feats']),
                        torch.from_numpy(data['text_mask']), str(data['fingerprint']))
        if expected_fingerprint is not None and cache.fingerprint != expected_fingerprint:
            raise ValueError(
                f'{path} was made by another text tower (fingerprint {cache.fingerprint}, this '
                f'deployment has {expected_fingerprint}); re-encode the phrases with '
                'tools/deployment/encode_texts.py and this model\'s config and checkpoint')
        return cache
