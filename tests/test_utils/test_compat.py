"""The compatibility layer: the safe loader's allow-list and mmengine's atomic checkpoint saving.

The loader's refusal of crafted files and the trust opt-in are tested through the train tool in
``tests/test_tools/test_train_tools.py``; here are the types mmengine itself writes.
"""
import os
import os.path as osp
import pickle
import uuid

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint
from torch.utils.data import Dataset

from mmsam3.utils import UntrustedCheckpointError, safe_torch_load
from mmsam3.utils.atomic_save import is_atomic_temporary


def test_empty_array_and_empty_history_buffer_load(tmp_path):
    # A message-hub state holding a scalar that never got a value (the layout Runner saves).
    hub_state = dict(log_scalars={'train/loss': HistoryBuffer()},
                     runtime_info={'iter': 0},
                     resumed_keys={
                         'train/loss': True,
                         'iter': True
                     })
    path = str(tmp_path / 'empty.pth')
    torch.save(
        {
            'state_dict': {
                'w': torch.ones(2)
            },
            'message_hub': hub_state,
            'meta': {
                'empty': np.array([]),
                'empty_int': np.zeros((0, 3), np.int64),
                'buffer': HistoryBuffer(),
                'raw': b''
            }
        }, path)
    ckpt = _load_checkpoint(path, map_location='cpu')  # through mmengine's loader
    assert ckpt['meta']['empty'].shape == (0, ) and ckpt['meta']['empty'].dtype == np.float64
    assert ckpt['meta']['empty_int'].shape == (0, 3)
    assert ckpt['meta']['empty_int'].dtype == np.int64
    assert ckpt['meta']['raw'] == b''
    buffer = ckpt['meta']['buffer']
    assert isinstance(buffer, HistoryBuffer) and len(buffer.data[0]) == 0
    # The statistics methods (pickled as getattr(HistoryBuffer, name)) still work after loading.
    buffer.update(2.0)
    assert buffer.mean() == 2.0
    hub = MessageHub(f'compat_{uuid.uuid4().hex[:8]}')
    hub.load_state_dict(ckpt['message_hub'])
    restored = hub.get_scalar('train/loss')
    assert isinstance(restored, HistoryBuffer) and len(restored.data[0]) == 0


class _CallsWithArgs:
    """Unpickles as ``fn(*args)``: a crafted file calling something of its choice."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_bytes_with_an_argument_is_refused(tmp_path):
    # bytes() is the empty value; bytes(n) would allocate n bytes chosen by the file.
    path = str(tmp_path / 'alloc.pth')
    torch.save({'meta': _CallsWithArgs(bytes, 1 << 40)}, path)
    with pytest.raises(UntrustedCheckpointError, match='bytes'):
        safe_torch_load(path)


def test_a_pickle_calling_anything_else_is_refused(tmp_path):
    marker = tmp_path / 'code_ran'
    path = str(tmp_path / 'hostile.pth')
    torch.save({
        'meta': {
            'empty': np.array([])
        },
        'x': _CallsWithArgs(os.system, f'touch {marker}')
    }, path)
    with pytest.raises(UntrustedCheckpointError, match='system') as err:
        _load_checkpoint(path, map_location='cpu')
    assert isinstance(err.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_mmengine_save_checkpoint_is_atomic(tmp_path):
    """``save_checkpoint`` (all of mmengine's callers share it) renames a complete file over."""
    from mmengine.runner import runner as runner_module

    assert runner_module.save_checkpoint is save_checkpoint  # the name Runner calls
    path = str(tmp_path / 'iter_1.pth')
    save_checkpoint({'meta': {'iter': 1}}, path)
    inode = os.stat(path).st_ino
    save_checkpoint({'meta': {'iter': 2}}, path)
    assert os.stat(path).st_ino != inode
    assert safe_torch_load(path)['meta']['iter'] == 2

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('half way')

    with pytest.raises(RuntimeError, match='half way'):
        save_checkpoint({'meta': {'iter': 3}, 'bad': Unpicklable()}, path)
    assert safe_torch_load(path)['meta']['iter'] == 2
    assert sorted(os.listdir(tmp_path)) == ['iter_1.pth']


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


def _runner(work_dir, max_iters, hooks=(), max_keep_ckpts=1):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class FailSaveAt(Hook):

        def __init__(self, at_iter):
            self.at_iter = at_iter

        def before_save_checkpoint(self, runner, checkpoint):
            if checkpoint['meta']['iter'] == self.at_iter:
                raise OSError(28, 'disk full while saving')

    return Runner(model=_Regression(),
                  work_dir=str(work_dir),
                  experiment_name=f'compat_{uuid.uuid4().hex[:8]}',
                  train_dataloader=dict(dataset=_Data(),
                                        sampler=dict(type='DefaultSampler', shuffle=False),
                                        batch_size=2,
                                        num_workers=0,
                                        collate_fn=dict(type='pseudo_collate')),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                                     interval=1,
                                                     by_epoch=False,
                                                     max_keep_ckpts=max_keep_ckpts),
                                     logger=dict(type='LoggerHook', interval=100)),
                  custom_hooks=[FailSaveAt(at) for at in hooks],
                  default_scope='mmdet',
                  log_level='WARNING')


def test_checkpoint_hook_keeps_the_old_checkpoint_until_the_new_one_is_written(tmp_path):
    # max_keep_ckpts=1: mmengine deletes iter_1.pth before writing iter_2.pth; a crash between
    # the two would leave no checkpoint at all.
    runner = _runner(tmp_path, max_iters=3, hooks=[2])
    with pytest.raises(OSError, match='disk full while saving'):
        runner.train()
    ckpts = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert ckpts == ['iter_1.pth']
    assert safe_torch_load(str(tmp_path / 'iter_1.pth'))['meta']['iter'] == 1
    with open(tmp_path / 'last_checkpoint') as f:
        assert osp.basename(f.read()) == 'iter_1.pth'
    assert not [n for n in os.listdir(tmp_path) if is_atomic_temporary(n)]


def test_checkpoint_hook_still_prunes_and_replaces_the_pointer(tmp_path):
    runner = _runner(tmp_path, max_iters=3, max_keep_ckpts=2)
    original = runner.save_checkpoint
    pointer = tmp_path / 'last_checkpoint'
    old_pointers = []

    def save_and_keep_the_pointer(*args, **kwargs):
        original(*args, **kwargs)
        if pointer.exists():  # a second name for the file the hook is about to update
            old_pointers.append(tmp_path / f'pointer_before_{len(old_pointers)}')
            os.link(pointer, old_pointers[-1])

    runner.save_checkpoint = save_and_keep_the_pointer
    runner.train()
    assert sorted(n for n in os.listdir(tmp_path)
                  if n.endswith('.pth')) == ['iter_2.pth', 'iter_3.pth']
    assert pointer.read_text() == osp.join(str(tmp_path), 'iter_3.pth')
    # The hook replaced the pointer with a new file each time; writing it in place would have
    # changed these linked copies too (and a reader could see a half-written name).
    assert [p.read_text() for p in old_pointers
            ] == [osp.join(str(tmp_path), 'iter_1.pth'),
                  osp.join(str(tmp_path), 'iter_2.pth')]
    assert not [n for n in os.listdir(tmp_path) if is_atomic_temporary(n)]
