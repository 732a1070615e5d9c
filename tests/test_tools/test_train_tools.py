"""The foundation: registration, train / resume / dist tools and safe checkpoint loading."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

from mmsam3.utils import safe_torch_load
from tests.utils import free_port, make_tiny_coco

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CFG = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_retinanet.py')


def _data_options(root):
    return [
        f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
        f'test_dataloader.dataset.data_root={root}/',
        f'val_evaluator.ann_file={root}/annotations.json',
        f'test_evaluator.ann_file={root}/annotations.json'
    ]


def _run(cmd, cwd, env=None, timeout=600):
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    return make_tiny_coco(str(tmp_path_factory.mktemp('tiny_coco')))


def test_custom_imports_registers_mmsam3_modules(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope

    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("custom_imports = dict(imports=['mmsam3'], allow_failed_imports=False)\n"
                        "default_scope = 'mmdet'\nmodel = dict(type='SAM3ViT')\n")
    cfg = Config.fromfile(str(cfg_file))
    assert 'mmsam3' in sys.modules
    from mmdet.registry import MODELS
    init_default_scope(cfg.default_scope)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    from mmsam3.models.backbones import SAM3ViT
    assert MODELS.get('SAM3ViT') is SAM3ViT


# mim's config lookup goes through mmengine's pkg_resources use, which setuptools deprecates
@pytest.mark.filterwarnings('ignore:pkg_resources is deprecated as an API:UserWarning')
def test_mim_base_config_resolves(tmp_path):
    import mmsam3  # noqa: F401  (the lookup fix for editable installs lives in mmsam3)
    from mmengine.config import Config

    cfg_file = tmp_path / 'user_cfg.py'
    cfg_file.write_text("_base_ = 'mmsam3::_base_/default_runtime.py'\nlog_level = 'DEBUG'\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports.imports == ['mmsam3']
    assert cfg.log_level == 'DEBUG'


def test_train_then_resume(tiny_coco, tmp_path):
    work_dir = str(tmp_path / 'work')
    train = [sys.executable, osp.join(REPO, 'tools', 'train.py'), TINY_CFG, '--work-dir', work_dir]
    rc, out = _run(train + ['--cfg-options'] + _data_options(tiny_coco), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))

    rc, out = _run(train + ['--resume', '--cfg-options', 'train_cfg.max_iters=4'] +
                   _data_options(tiny_coco), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/4]' in out and 'Iter(train) [1/4]' not in out
    ckpt = safe_torch_load(osp.join(work_dir, 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    # Resumed LR follows the uninterrupted schedule (LinearLR 0.5 -> 1.0 over 4 iters).
    assert ckpt['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.01)


class _RunsCode:
    """Unpickling this object calls ``open(marker, 'w')``: a stand-in for hostile code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _crafted_checkpoint(tmp_path):
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'crafted.pth')
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': _RunsCode(marker)}, path)
    return path, marker


def test_crafted_checkpoint_is_refused(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmsam3.utils import UntrustedCheckpointError

    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(UntrustedCheckpointError, match='MMSAM3_TRUSTED_CHECKPOINTS') as err:
        _load_checkpoint(path, map_location='cpu')
    assert 'open' in str(err.value)  # the offending global is named
    assert isinstance(err.value, pickle.UnpicklingError)
    assert not osp.exists(marker)


def test_trusted_checkpoint_opt_in(tmp_path):
    import datetime

    from mmengine.runner.checkpoint import _load_checkpoint

    from mmsam3.utils import UntrustedCheckpointError, trusted_checkpoints

    path = str(tmp_path / 'with_date.pth')
    torch.save({'state_dict': {}, 'meta': {'day': datetime.date(2024, 1, 2)}}, path)
    with pytest.raises(UntrustedCheckpointError):
        _load_checkpoint(path, map_location='cpu')
    with trusted_checkpoints(path):
        ckpt = _load_checkpoint(path, map_location='cpu')
    assert ckpt['meta']['day'] == datetime.date(2024, 1, 2)


def test_resume_from_crafted_checkpoint_runs_nothing(tiny_coco, tmp_path):
    path, marker = _crafted_checkpoint(tmp_path)
    cmd = [
        sys.executable, osp.join(REPO, 'tools', 'train.py'), TINY_CFG, '--work-dir',
        str(tmp_path / 'work'), '--resume', path, '--cfg-options'
    ] + _data_options(tiny_coco)
    rc, out = _run(cmd, cwd=str(tmp_path))
    assert rc != 0
    assert 'UntrustedCheckpointError' in out and 'Refusing to load checkpoint' in out
    assert not osp.exists(marker)


def test_dist_train_two_processes_on_cpu(tiny_coco, tmp_path):
    work_dir = str(tmp_path / 'work')
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), TINY_CFG, '2', '--work-dir',
           work_dir, '--cfg-options', 'env_cfg.dist_cfg.backend=nccl',
           'default_hooks.checkpoint.interval=2'] + _data_options(tiny_coco)
    env = {'PORT': str(free_port()), 'PYTHON': sys.executable}
    rc, out = _run(cmd, cwd=str(tmp_path), env=env)
    assert rc == 0, out[-3000:]
    assert 'Distributed training: True' in out
    assert out.count('Iter(train) [2/2]') == 1  # only rank 0 logs
    ckpts = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))
    assert ckpts == ['iter_2.pth']  # one checkpoint, written by rank 0 only
    ckpt = safe_torch_load(osp.join(work_dir, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
