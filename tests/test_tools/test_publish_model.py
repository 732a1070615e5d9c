"""tools/model_converters/publish_model.py: weights + meta only, sha256 in the name, atomic."""
import hashlib
import importlib.util
import os
import os.path as osp
import re

import pytest
import torch

from mmsam3.utils import UntrustedCheckpointError, safe_torch_load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def publish():
    spec = importlib.util.spec_from_file_location(
        'publish_model', osp.join(REPO, 'tools', 'model_converters', 'publish_model.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def training_checkpoint(tmp_path):
    """A checkpoint laid out as mmengine's CheckpointHook writes it, from real objects."""
    from mmengine.logging import MessageHub

    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optim.step()
    hub = MessageHub.get_instance('test_publish_model')
    hub.update_scalar('train/loss', 1.5)
    sched = torch.optim.lr_scheduler.StepLR(optim, 1)
    ckpt = dict(meta=dict(iter=6, epoch=0, mmengine_version='0.10.7', seed=0,
                          hook_msgs=dict(last_ckpt='/some/machine/work_dirs/iter_6.pth')),
                state_dict=model.state_dict(), optimizer=optim.state_dict(),
                message_hub=hub.state_dict(), param_schedulers=[sched.state_dict()])
    path = str(tmp_path / 'iter_6.pth')
    torch.save(ckpt, path)
    return path, model.state_dict()


def test_publish(publish, training_checkpoint, tmp_path, capsys):
    path, state = training_checkpoint
    out_dir = tmp_path / 'published'
    final = publish.main([path, str(out_dir / 'sam3_tiny.pth')])
    printed = capsys.readouterr().out
    assert re.fullmatch(r'sam3_tiny-[0-9a-f]{8}\.pth', osp.basename(final))
    with open(final, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest()[:8] == final[-12:-4]
    published = safe_torch_load(final, map_location='cpu')
    assert set(published) == {'meta', 'state_dict'}
    assert 'hook_msgs' not in published['meta'] and published['meta']['iter'] == 6
    for k, v in state.items():
        assert torch.equal(published['state_dict'][k], v)
    for key in ('optimizer', 'message_hub', 'param_schedulers'):
        assert f"dropping '{key}'" in printed
    assert os.listdir(out_dir) == [osp.basename(final)]  # no temporary file left
    assert os.stat(final).st_mode & 0o044  # readable by others, like a plain torch.save


def test_save_keys(publish, training_checkpoint, tmp_path):
    path, _ = training_checkpoint
    final = publish.main([path, str(tmp_path / 'w'), '--save-keys', 'state_dict'])
    assert final.endswith('.pth') and set(safe_torch_load(final)) == {'state_dict'}


def test_failed_write_leaves_nothing(publish, training_checkpoint, tmp_path, monkeypatch):
    path, _ = training_checkpoint
    out_dir = tmp_path / 'out'
    out_dir.mkdir()

    def torch_save_then_fail(obj, f):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(publish.torch, 'save', torch_save_then_fail)
    with pytest.raises(OSError, match='disk full'):
        publish.process_checkpoint(path, str(out_dir / 'm.pth'))
    assert os.listdir(out_dir) == []


def test_refuses_untrusted_and_bare_files(publish, tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (print, ('ran',))

    crafted = str(tmp_path / 'crafted.pth')
    torch.save(dict(state_dict={}, meta=RunsCode()), crafted)
    with pytest.raises(UntrustedCheckpointError):
        publish.main([crafted, str(tmp_path / 'o.pth')])
    bare = str(tmp_path / 'bare.pth')
    torch.save({'w': torch.zeros(1)}, bare)
    with pytest.raises(ValueError, match='not an mmengine checkpoint'):
        publish.main([bare, str(tmp_path / 'o.pth')])
