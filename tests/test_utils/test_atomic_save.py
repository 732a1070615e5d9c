"""atomic_open / atomic_torch_save: a failed or killed write never shows under the final name."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmsam3.utils import atomic_open, atomic_torch_save, safe_torch_load
from mmsam3.utils.atomic_save import is_atomic_temporary

ATOMIC_SAVE_PY = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'mmsam3',
                          'utils', 'atomic_save.py')


def _leftovers(folder):
    return [n for n in os.listdir(folder) if is_atomic_temporary(n)]


def test_save_replaces_the_file_in_one_step(tmp_path):
    path = str(tmp_path / 'sub' / 'iter_1.pth')  # missing folders are created
    atomic_torch_save({'w': torch.arange(3)}, path)
    old_inode = os.stat(path).st_ino
    atomic_torch_save({'w': torch.arange(5)}, path)
    assert safe_torch_load(path)['w'].tolist() == [0, 1, 2, 3, 4]
    assert os.stat(path).st_ino != old_inode  # a new file was renamed over it, not rewritten
    assert _leftovers(tmp_path / 'sub') == []
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # what open(path, 'wb') would give


def test_write_failing_half_way_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / 'iter_2.pth')
    atomic_torch_save({'iter': 1, 'w': torch.ones(1000)}, path)
    before = open(path, 'rb').read()
    new = torch.randn(100000)
    with pytest.raises(OSError, match='disk full'):
        with atomic_open(path, 'wb') as f:
            f.write(b'PK\x03\x04' + new.numpy().tobytes()[:200000])  # half of a new file
            f.flush()
            assert _leftovers(tmp_path)  # really written, next to the final name
            raise OSError(28, 'disk full')
    assert open(path, 'rb').read() == before
    assert safe_torch_load(path)['iter'] == 1
    assert _leftovers(tmp_path) == []


def test_object_that_fails_to_pickle_leaves_no_file(tmp_path):

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('cannot pickle this')

    path = str(tmp_path / 'iter_3.pth')
    with pytest.raises(RuntimeError, match='cannot pickle this'):
        atomic_torch_save({'w': torch.ones(10), 'bad': Unpicklable()}, path)
    assert os.listdir(tmp_path) == []


def test_symlink_target_is_replaced(tmp_path):
    target = tmp_path / 'real.pth'
    atomic_torch_save({'v': 1}, str(target))
    link = tmp_path / 'latest.pth'
    link.symlink_to(target)
    atomic_torch_save({'v': 2}, str(link))
    assert link.is_symlink() and safe_torch_load(str(target))['v'] == 2


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match='mode must be'):
        with atomic_open(str(tmp_path / 'x'), 'ab'):
            pass


_KILLED_WRITER = r'''
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('atomic_save', sys.argv[1])
atomic_save = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic_save)
payload = open(sys.argv[3], 'rb').read()
with atomic_save.atomic_open(sys.argv[2], 'wb') as f:
    f.write(payload[:len(payload) // 2])
    f.flush()
    print(f.name, flush=True)
    time.sleep(120)
    f.write(payload[len(payload) // 2:])
'''


def test_sigkill_during_the_write_keeps_the_previous_checkpoint(tmp_path):
    """A real process is SIGKILLed with half of a new checkpoint written."""
    path = str(tmp_path / 'iter_4.pth')
    atomic_torch_save({'iter': 3, 'w': torch.zeros(10)}, path)
    before = open(path, 'rb').read()
    new = str(tmp_path / 'new_payload.bin')
    torch.save({'iter': 4, 'w': torch.randn(200000)}, new)
    # atomic_save.py needs only torch: load it by path, not through the (slow) mmsam3 import.
    proc = subprocess.Popen([sys.executable, '-c', _KILLED_WRITER, ATOMIC_SAVE_PY, path, new],
                            stdout=subprocess.PIPE,
                            text=True)
    try:
        tmp_name = proc.stdout.readline().strip()
        assert tmp_name, 'the writer died before writing'
        deadline = time.time() + 10
        while os.path.getsize(tmp_name) < os.path.getsize(new) // 2 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert open(path, 'rb').read() == before  # the final name still holds the old checkpoint
    assert safe_torch_load(path)['iter'] == 3
    # The half-written temporary is all that is left, and it is no *.pth.
    assert _leftovers(tmp_path) == [osp.basename(tmp_name)]
    assert not tmp_name.endswith('.pth')
    assert os.path.getsize(tmp_name) == os.path.getsize(new) // 2
