"""WallTimeBudgetHook stops a real mmengine run after its budget and saves the last weights."""
import os.path as osp

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmsam3.engine.hooks import WallTimeBudgetHook


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, inputs, mode='tensor'):
        loss = self.fc(inputs).pow(2).mean()
        return dict(loss=loss) if mode == 'loss' else loss


class _Data(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, idx):
        return dict(inputs=torch.full((4, ), float(idx)))


def test_stops_after_budget_and_saves(tmp_path):
    runner = Runner(
        model=_Toy(), work_dir=str(tmp_path), default_scope='mmdet',
        train_dataloader=dict(dataset=_Data(), batch_size=2,
                              sampler=dict(type='InfiniteSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=10**7),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=10**7,
                                           by_epoch=False)),
        custom_hooks=[dict(type='WallTimeBudgetHook', seconds=0.3)])
    runner.train()
    assert 0 < runner.iter < 10**7
    with open(osp.join(str(tmp_path), 'last_checkpoint')) as f:
        assert f.read().strip().endswith(f'iter_{runner.iter}.pth')


def test_bad_arguments():
    with pytest.raises(ValueError, match='seconds must be > 0'):
        WallTimeBudgetHook(0)
    with pytest.raises(ValueError, match="'wall' or 'process'"):
        WallTimeBudgetHook(1, clock='cpu')
