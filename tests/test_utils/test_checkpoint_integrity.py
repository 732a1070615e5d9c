"""Checkpoint read checks and the resume fallback, in real mmengine Runner runs (toy model)."""
import logging
import os
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from mmsam3.utils import checkpoint_read_error, safe_torch_load


def _truncate(path, keep=0.5):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


@pytest.fixture
def good_file(tmp_path):
    path = str(tmp_path / 'good.pth')
    torch.save({'state_dict': {'w': torch.randn(4096)}, 'meta': {'iter': 1}}, path)
    return path


def test_a_complete_file_reads(good_file):
    assert checkpoint_read_error(good_file) is None


@pytest.mark.parametrize('keep', [0.01, 0.5, 0.999])
def test_truncated_file_is_named_as_such(good_file, keep):
    _truncate(good_file, keep)
    assert 'truncated' in checkpoint_read_error(good_file)


def test_flipped_byte_fails_the_crc(good_file):
    with open(good_file, 'r+b') as f:
        f.seek(os.path.getsize(good_file) // 2)  # inside the tensor data
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert 'CRC' in checkpoint_read_error(good_file)


def test_empty_missing_and_foreign_files(tmp_path):
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert checkpoint_read_error(str(empty)) == 'it is empty (0 bytes)'
    assert checkpoint_read_error(str(tmp_path / 'nope.pth')) == 'it does not exist'
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    assert 'not a torch checkpoint' in checkpoint_read_error(str(text))
    legacy = str(tmp_path / 'legacy.pth')  # torch's pre-1.6 format: a pickle, not a zip
    torch.save({'w': torch.ones(8)}, legacy, _use_new_zipfile_serialization=False)
    assert checkpoint_read_error(legacy) is None
    _truncate(legacy)
    assert 'truncated or damaged' in checkpoint_read_error(legacy)


class _Data(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)))


class _Regression(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


def _runner(work_dir, max_iters, resume=False, load_from=None):
    from mmengine.runner import Runner
    return Runner(model=_Regression(),
                  work_dir=str(work_dir),
                  experiment_name=f'integrity_{uuid.uuid4().hex[:8]}',
                  train_dataloader=dict(dataset=_Data(),
                                        sampler=dict(type='DefaultSampler', shuffle=False),
                                        batch_size=2,
                                        num_workers=0,
                                        collate_fn=dict(type='pseudo_collate')),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
                  param_scheduler=dict(type='LinearLR',
                                       start_factor=0.1,
                                       by_epoch=False,
                                       begin=0,
                                       end=6),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                                     interval=1,
                                                     by_epoch=False,
                                                     max_keep_ckpts=3),
                                     logger=dict(type='LoggerHook', interval=100)),
                  resume=resume,
                  load_from=load_from,
                  default_scope='mmdet',
                  log_level='WARNING')


@pytest.fixture
def trained(tmp_path):
    """A work dir with iter_1..3.pth, ``last_checkpoint`` naming iter_3.pth."""
    _runner(tmp_path, max_iters=3).train()
    return tmp_path


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _resume(work_dir, max_iters, load_from=None):
    runner = _runner(work_dir, max_iters, resume=True, load_from=load_from)
    records = _Records()
    MMLogger.get_current_instance().addHandler(records)
    try:
        runner.load_or_resume()
    finally:
        MMLogger.get_current_instance().removeHandler(records)
    return runner, records.messages


def test_auto_resume_takes_the_named_checkpoint_when_it_reads(trained):
    runner, warnings = _resume(trained, max_iters=5)
    assert runner.iter == 3
    assert not [w for w in warnings if 'resum' in w.lower() or 'checkpoint' in w.lower()]


def test_truncated_named_checkpoint_falls_back_to_the_previous_one(trained):
    bad = osp.join(str(trained), 'iter_3.pth')
    assert open(osp.join(str(trained), 'last_checkpoint')).read() == bad
    _truncate(bad)
    runner, warnings = _resume(trained, max_iters=5)
    assert runner.iter == 2  # resumed from iter_2.pth
    assert any(bad in w and 'truncated' in w for w in warnings), warnings
    assert any(
        w.startswith('Resuming from ' + osp.join(str(trained), 'iter_2.pth'))
        for w in warnings), warnings
    # The resumed run then writes a complete iter_3.pth over the damaged one.
    runner.train()
    assert safe_torch_load(bad)['meta']['iter'] == 3
    assert runner.iter == 5


def test_fallback_skips_every_unreadable_candidate(trained):
    for it in (2, 3):
        _truncate(osp.join(str(trained), f'iter_{it}.pth'))
    runner, warnings = _resume(trained, max_iters=5)
    assert runner.iter == 1
    assert any('Skipping checkpoint ' + osp.join(str(trained), 'iter_2.pth') in w
               for w in warnings), warnings


def test_no_readable_checkpoint_is_a_clear_error(trained):
    for it in (1, 2, 3):
        _truncate(osp.join(str(trained), f'iter_{it}.pth'))
    with pytest.raises(RuntimeError,
                       match='no other checkpoint .* can be read.*start training '
                       'afresh'):
        _resume(trained, max_iters=5)


def test_pointer_naming_a_deleted_file_falls_back(trained):
    os.remove(osp.join(str(trained), 'iter_3.pth'))
    runner, warnings = _resume(trained, max_iters=5)
    assert runner.iter == 2
    assert any('does not exist' in w for w in warnings), warnings


def test_no_pointer_starts_afresh_as_mmengine_does(tmp_path):
    runner, _ = _resume(tmp_path, max_iters=2)
    assert runner.iter == 0


def test_explicit_unreadable_resume_path_is_refused_naming_a_good_one(trained):
    bad = osp.join(str(trained), 'iter_3.pth')
    _truncate(bad)
    good = osp.join(str(trained), 'iter_2.pth')
    with pytest.raises(RuntimeError,
                       match=f'Cannot resume from {bad}: it is truncated.*'
                       f'--resume {good}'):
        _resume(trained, max_iters=5, load_from=bad)
    runner, _ = _resume(trained, max_iters=5, load_from=good)
    assert runner.iter == 2
