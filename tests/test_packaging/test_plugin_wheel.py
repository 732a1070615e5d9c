"""mmsam3 as users install a plugin: a wheel, away from the checkout.

The wheel is built from a copy of the tracked tree (so the checkout's editable ``mmsam3/.mim``
links are untouched), installed with ``--no-deps --no-index`` into a new virtual environment that
reuses this environment's locked packages (a path entry to its site-packages, read after the new
environment's own), and exercised from a folder outside the repository: ``mmsam3::`` configs
through mmengine, the tiny model through mmdet's registry, ``DetInferencer`` on a generated image,
and ``mim search mmsam3``.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f'{cmd}\n{proc.stdout}\n{proc.stderr}'
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('build')
    src = out / 'source'
    tracked = _run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                   cwd=REPO).split('\0')
    for rel in filter(None, tracked):
        if not osp.isfile(osp.join(REPO, rel)):
            continue
        os.makedirs(src / osp.dirname(rel), exist_ok=True)
        shutil.copy2(osp.join(REPO, rel), src / rel)
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
          '-q', '-w', str(out / 'dist'), str(src)])
    wheels = list((out / 'dist').glob('mmsam3-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_configs_tools_and_model_index(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    mim = [n for n in names if n.startswith('mmsam3/.mim/')]
    configs = [n for n in mim if n.startswith('mmsam3/.mim/configs/')]
    tools = [n for n in mim if n.startswith('mmsam3/.mim/tools/')]
    tree = wheel.parent.parent / 'source'  # the tracked files the wheel was built from
    repo_configs = [f for f in tree.rglob('*') if f.is_file() and 'configs' == f.relative_to(
        tree).parts[0]]
    assert len(configs) == len(repo_configs) > 30
    assert 'mmsam3/.mim/configs/sam3/sam3_vit-l_zeroshot_coco.py' in configs
    assert 'mmsam3/.mim/configs/_base_/models/sam3_tiny.py' in configs
    assert 'mmsam3/.mim/tools/train.py' in tools and 'mmsam3/.mim/tools/test.py' in tools
    assert 'mmsam3/.mim/model-index.yml' in mim
    assert 'mmsam3/.mim/configs/sam3/metafile.yml' in configs
    assert not [n for n in names if n.startswith(('tests/', 'mmsam3/tests/'))]


USER_SCRIPT = '''
import os, os.path as osp, sys, tempfile
import cv2, numpy as np
import mmsam3
assert sys.prefix == {venv!r}, sys.prefix
assert mmsam3.__file__.startswith({venv!r}), mmsam3.__file__
assert not mmsam3.__file__.startswith({repo!r})
from mmengine.config import Config
work = tempfile.mkdtemp(dir=os.getcwd())
zeroshot = osp.join(work, 'my_zeroshot.py')
with open(zeroshot, 'w') as f:
    f.write("_base_ = 'mmsam3::sam3/sam3_vit-l_zeroshot_coco.py'\\n")
cfg = Config.fromfile(zeroshot)
assert cfg.model.type == 'SAM3' and cfg.model.backbone.img_size == 1008, cfg.model
print('zeroshot config:', cfg.model.type, cfg.model.backbone.img_size)

user_cfg = osp.join(work, 'my_tiny.py')
with open(user_cfg, 'w') as f:
    f.write("_base_ = ['mmsam3::_base_/models/sam3_tiny.py',\\n"
            "          'mmsam3::_base_/datasets/sam3_coco_prompt.py',\\n"
            "          'mmsam3::_base_/default_runtime.py']\\n"
            "model = dict(tokenizer=dict(bpe_path={bpe!r}))\\n"
            "test_pipeline = [dict(type='LoadImageFromFile'),\\n"
            "                 dict(type='Resize', scale=(168, 168), keep_ratio=False),\\n"
            "                 dict(type='PackSAM3Inputs')]\\n"
            "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\\n")
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
model = MODELS.build(Config.fromfile(user_cfg).model)
print('tiny model:', type(model).__name__, sum(p.numel() for p in model.parameters()))

img = np.zeros((100, 150, 3), np.uint8)
img[20:60, 30:90] = (0, 0, 255)
path = osp.join(work, 'shapes.jpg')
cv2.imwrite(path, img)
from mmdet.apis import DetInferencer
inferencer = DetInferencer(model=user_cfg, weights=None, device='cpu', show_progress=False)
res = inferencer(path, texts='red box . circle', pred_score_thr=0.0, return_vis=False)
pred = res['predictions'][0]
assert len(pred['scores']) == 40, len(pred['scores'])
print('DetInferencer:', len(pred['scores']), 'instances')
'''


def test_wheel_installs_and_runs_away_from_the_checkout(wheel, tmp_path, bpe_path):
    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    python = str(venv / 'bin' / 'python')
    site = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).strip()
    # The locked packages of this environment, read after the new environment's own: a plain path
    # entry, so this environment's .pth files (the editable mmsam3 among them) are not processed.
    with open(osp.join(site, 'locked_packages.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    _run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--no-index',
          '-q', str(wheel)])
    away = tmp_path / 'user_project'
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    script = USER_SCRIPT.format(venv=str(venv), repo=REPO, bpe=bpe_path)
    out = _run([python, '-W', 'ignore', '-c', script], cwd=str(away), env=env)
    assert 'DetInferencer: 40 instances' in out, out

    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    if mim is None:
        pytest.skip('openmim is not installed: `mim search mmsam3` not checked')
    out = _run([python, mim, 'search', 'mmsam3'], cwd=str(away), env=env)
    assert 'sam3_vit-l_zeroshot_coco' in out, out
