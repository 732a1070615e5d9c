"""Fixtures of the engine tests: the tiny SAM 3 and the fine-tuning schedule config."""
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCHEDULE = osp.join(REPO, 'configs/_base_/schedules/sam3_finetune.py')


def build_tiny_sam3(bpe_path, **overrides):
    """Our tiny SAM 3 (configs/_base_/models/sam3_tiny.py), seeded; overrides are `model.` keys."""
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/models/sam3_tiny.py'))
    cfg.model.tokenizer.bpe_path = bpe_path
    if overrides:
        cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture
def schedule_cfg():
    from mmengine.config import Config
    return Config.fromfile(SCHEDULE)
