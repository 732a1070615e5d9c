"""Fixtures of the engine tests: the fine-tuning schedule config."""
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCHEDULE = osp.join(REPO, 'configs/_base_/schedules/sam3_finetune.py')


@pytest.fixture
def schedule_cfg():
    from mmengine.config import Config
    return Config.fromfile(SCHEDULE)
