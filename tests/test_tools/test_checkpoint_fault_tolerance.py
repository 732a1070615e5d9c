"""tools/train.py killed with SIGKILL (during training, and half way through writing a
checkpoint), then ``--resume``: no partial file under a checkpoint's name, a truncated checkpoint
named by ``last_checkpoint`` is skipped with a warning, and the resumed run ends where an
uninterrupted one does (same final iteration, same LR).

The kill during a save is real: a launcher wraps ``torch.save`` so that, for one checkpoint, it
writes half the bytes into the file it was given, announces that file, and sleeps until the test
kills it. Against a trainer that writes in place, that file is the checkpoint itself.
"""
import importlib.util
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from mmsam3.utils import checkpoint_read_error, safe_torch_load
from tests.test_tools.test_train_sam3_shapes import CONFIG as SHAPES_CONFIG
from tests.test_tools.test_train_sam3_shapes import _options as _shapes_options
from tests.test_tools.test_train_tools import TINY_CFG, _data_options, tiny_coco  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN_PY = osp.join(REPO, 'tools', 'train.py')
NO_VAL = ['train_cfg.val_begin=1000']  # no validation, not even after the last iteration

_STALLING_LAUNCHER = r'''
"""Run tools/train.py; the save of one checkpoint stops half way and waits to be killed."""
import io, os, runpy, sys, time
import torch

TARGET, MARKER, TRAIN_PY = os.environ['STALL_SAVE_OF'], os.environ['STALL_MARKER'], sys.argv[1]
_save = torch.save

def stalling_save(obj, f, *args, **kwargs):
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, 'name', None)
    if not isinstance(name, (str, os.PathLike)) or TARGET not in os.path.basename(name):
        return _save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    _save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    out = open(f, 'wb') if isinstance(f, (str, os.PathLike)) else f
    out.write(data[:len(data) // 2])
    out.flush()
    os.fsync(out.fileno())
    with open(MARKER + '.part', 'w') as m:
        m.write(os.path.abspath(name))
    os.replace(MARKER + '.part', MARKER)
    time.sleep(600)

torch.save = stalling_save
sys.argv = sys.argv[1:]
runpy.run_path(TRAIN_PY, run_name='__main__')
'''


def _env():
    return dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')


def _run(cmd, cwd, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _start(cmd, cwd, log, env=None):
    """Start ``cmd`` with stdout+stderr into the file ``log``."""
    out = open(log, 'w')
    try:
        return subprocess.Popen(cmd,
                                cwd=cwd,
                                env=dict(_env(), **(env or {})),
                                stdout=out,
                                stderr=subprocess.STDOUT)
    finally:
        out.close()


def _sigkill_when(proc, ready, log, timeout=300):
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it exits or times out first."""
    deadline = time.time() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f'exited ({proc.returncode}) before the kill:\n'
                            f'{open(log).read()[-3000:]}')
            if time.time() > deadline:
                pytest.fail(f'not ready after {timeout} s:\n{open(log).read()[-3000:]}')
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _kill_mid_save(cmd, cwd, tmp_path, target):
    """Run ``cmd`` (tools/train.py's arguments) and SIGKILL it half way through saving
    ``target``; returns the file that was being written."""
    launcher = tmp_path / 'stalling_launcher.py'
    launcher.write_text(_STALLING_LAUNCHER)
    marker = str(tmp_path / f'writing_{target}.txt')
    log = str(tmp_path / f'killed_saving_{target}.log')
    proc = _start([sys.executable, str(launcher), TRAIN_PY] + cmd,
                  cwd,
                  log,
                  env=dict(STALL_SAVE_OF=target, STALL_MARKER=marker))
    _sigkill_when(proc, lambda: osp.exists(marker), log)
    with open(marker) as f:
        return f.read()


def _kill_in_training(cmd, cwd, tmp_path, after_line):
    log = str(tmp_path / 'killed_training.log')
    proc = _start([sys.executable, TRAIN_PY] + cmd, cwd, log)

    def ready():
        with open(log) as f:
            return after_line in f.read()

    _sigkill_when(proc, ready, log)
    with open(log) as f:
        return f.read()


def _assert_only_complete_checkpoints(work_dir):
    """Every ``*.pth`` reads completely and loads; ``last_checkpoint`` names one of them."""
    names = sorted(n for n in os.listdir(work_dir) if n.endswith('.pth'))
    for name in names:
        path = osp.join(work_dir, name)
        assert checkpoint_read_error(path) is None, name
        assert 'state_dict' in safe_torch_load(path)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert osp.basename(f.read()) in names
    return names


def _iter_and_lr(path):
    ckpt = safe_torch_load(path)
    return ckpt['meta']['iter'], ckpt['optimizer']['param_groups'][0]['lr']


def _train_in_process(argv, monkeypatch):
    """``tools/train.py`` ``main(argv)`` in this process (the uninterrupted reference run)."""
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args sets it; keep the test env clean
    spec = importlib.util.spec_from_file_location('mmsam3_train_tool', TRAIN_PY)
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    train.main(argv)


def test_killed_mid_save_then_truncated_resume(tiny_coco, tmp_path, monkeypatch):  # noqa: F811
    """tiny RetinaNet (fast): killed writing iter_4.pth; iter_3.pth (named by last_checkpoint)
    then truncated; ``--resume`` warns, falls back to iter_2.pth and ends like a straight run."""
    options = ['--cfg-options'] + _data_options(tiny_coco) + NO_VAL + [
        'train_cfg.max_iters=6', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=2', 'param_scheduler.0.end=8'
    ]
    straight, work_dir = str(tmp_path / 'straight'), str(tmp_path / 'killed')
    _train_in_process([TINY_CFG, '--work-dir', straight] + options, monkeypatch)
    assert _iter_and_lr(osp.join(straight, 'iter_6.pth'))[0] == 6

    cmd = [TINY_CFG, '--work-dir', work_dir] + options
    partial = _kill_mid_save(cmd, str(tmp_path), tmp_path, 'iter_4.pth')
    # The half-written file is a temporary next to the checkpoints, never under a final name.
    assert osp.dirname(partial) == work_dir and not partial.endswith('.pth')
    assert osp.getsize(partial) > 0
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))
    # max_keep_ckpts=2 made mmengine delete iter_2.pth before writing iter_4.pth; it is kept
    # until the new checkpoint is complete.
    assert _assert_only_complete_checkpoints(work_dir) == ['iter_2.pth', 'iter_3.pth']

    bad = osp.join(work_dir, 'iter_3.pth')
    with open(bad, 'r+b') as f:
        f.truncate(osp.getsize(bad) // 2)
    rc, out = _run([sys.executable, TRAIN_PY] + cmd + ['--resume'], cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert f'Cannot resume from {bad}' in out and 'truncated' in out
    assert f'Resuming from {osp.join(work_dir, "iter_2.pth")} instead' in out
    assert 'resumed epoch: 0, iter: 2' in out and 'Iter(train) [6/6]' in out
    assert _iter_and_lr(osp.join(work_dir, 'iter_6.pth')) == pytest.approx(
        _iter_and_lr(osp.join(straight, 'iter_6.pth')))
    assert _assert_only_complete_checkpoints(work_dir) == ['iter_5.pth', 'iter_6.pth']


@pytest.mark.slow
def test_sam3_shapes_killed_in_training_and_mid_save_resumes_to_the_same_end(
        shapes, bpe_path, tmp_path):  # noqa: F811
    """The tiny SAM 3 on shapes (about 2 minutes on 2 cores): SIGKILL during iteration 4,
    ``--resume``, SIGKILL half way through writing iter_4.pth, ``--resume`` to iteration 6."""
    # max_keep_ckpts=1: without deferred pruning, iter_2.pth would be gone before iter_4.pth
    # is written.
    options = ['--cfg-options'] + _shapes_options(shapes, bpe_path, 6, interval=2) + NO_VAL + [
        'default_hooks.checkpoint.max_keep_ckpts=1', 'param_scheduler.0.end=8'
    ]
    straight, work_dir = str(tmp_path / 'straight'), str(tmp_path / 'killed')
    rc, out = _run([sys.executable, TRAIN_PY, SHAPES_CONFIG, '--work-dir', straight] + options,
                   cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    cmd = [SHAPES_CONFIG, '--work-dir', work_dir] + options

    out = _kill_in_training(cmd, str(tmp_path), tmp_path, 'Iter(train) [3/6]')
    assert 'Saving checkpoint at 2 iterations' in out
    assert _assert_only_complete_checkpoints(work_dir) == ['iter_2.pth']

    partial = _kill_mid_save(cmd + ['--resume'], str(tmp_path), tmp_path, 'iter_4.pth')
    assert osp.dirname(partial) == work_dir and not partial.endswith('.pth')
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))
    assert _assert_only_complete_checkpoints(work_dir) == ['iter_2.pth']

    rc, out = _run([sys.executable, TRAIN_PY] + cmd + ['--resume'], cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert 'resumed epoch: 0, iter: 2' in out and 'Iter(train) [6/6]' in out
    assert 'Cannot resume' not in out
    assert _iter_and_lr(osp.join(work_dir, 'iter_6.pth')) == pytest.approx(
        _iter_and_lr(osp.join(straight, 'iter_6.pth')))
    assert _assert_only_complete_checkpoints(work_dir) == ['iter_6.pth']
