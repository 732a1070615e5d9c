"""The tiny SAM 3 of ``configs/_base_/models/sam3_tiny.py``, built the same way everywhere."""
import os.path as osp
from typing import Optional

import torch

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(_REPO, 'configs', '_base_', 'models', 'sam3_tiny.py')


def tiny_model_cfg(bpe_path: Optional[str] = None, **overrides):
    """The ``model`` dict of the tiny config; ``overrides`` are merged as ``model.<key>``.

    ``bpe_path`` (optional) points the tokenizer at the CLIP BPE vocabulary.
    """
    import mmsam3  # noqa: F401  (registers the modules)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_CONFIG)
    if bpe_path is not None:
        cfg.model.tokenizer.bpe_path = bpe_path
    if overrides:
        cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    return cfg.model


def build_tiny_sam3(bpe_path: Optional[str] = None, seed: int = 0, **overrides):
    """The tiny detector with its own initialisation, drawn after ``torch.manual_seed(seed)``."""
    from mmdet.registry import MODELS

    cfg = tiny_model_cfg(bpe_path, **overrides)
    torch.manual_seed(seed)
    return MODELS.build(cfg)
