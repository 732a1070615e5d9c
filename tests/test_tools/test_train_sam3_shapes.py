"""Training the tiny SAM 3 on synthetic shapes through tools/train.py: resume and DDP."""
import json
import os
import os.path as osp
import sys

import pytest
import torch

from mmsam3.utils import safe_torch_load
from tests.utils import free_port, run_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')


def _options(root, bpe_path, max_iters, interval=1):
    ann = root + 'valid/_annotations.coco.json'
    return [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}', f'val_evaluator.0.ann_file={ann}',
        f'val_evaluator.1.ann_file={ann}', f'test_evaluator.0.ann_file={ann}',
        f'test_evaluator.1.ann_file={ann}', f'model.tokenizer.bpe_path={bpe_path}',
        f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=1000',
        f'default_hooks.checkpoint.interval={interval}', 'default_hooks.checkpoint.save_best=None',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'param_scheduler.0.end=3',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1'
    ]


def _lr_by_iter(work_dir):
    lrs = {}
    for path in sorted(
            osp.join(work_dir, d, 'vis_data', 'scalars.json') for d in os.listdir(work_dir)
            if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'lr' in rec:
                    lrs[rec['step']] = rec['lr']
    return lrs


def test_resume_matches_uninterruptedrun_tool(shapes, bpe_path, tmp_path):
    train = [sys.executable, osp.join(REPO, 'tools/train.py'), CONFIG]
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    rc, out = run_tool(train + ['--work-dir', straight, '--cfg-options'] +
                   _options(shapes, bpe_path, 4), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    # "Killed" after the checkpoint of iteration 2, then resumed to the same end.
    rc, out = run_tool(train + ['--work-dir', resumed, '--cfg-options'] +
                   _options(shapes, bpe_path, 4) + ['train_cfg.max_iters=2'], cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    rc, out = run_tool(train + ['--work-dir', resumed, '--resume', '--cfg-options'] +
                   _options(shapes, bpe_path, 4), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert 'resumed epoch: 0, iter: 2' in out
    a = safe_torch_load(osp.join(straight, 'iter_4.pth'))
    b = safe_torch_load(osp.join(resumed, 'iter_4.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 4
    assert a['optimizer']['param_groups'][0]['lr'] == pytest.approx(
        b['optimizer']['param_groups'][0]['lr'])
    lr_a, lr_b = _lr_by_iter(straight), _lr_by_iter(resumed)
    for it in (3, 4):
        assert lr_a[it] == pytest.approx(lr_b[it])


def test_dist_train_shapes_two_processes(shapes, bpe_path, tmp_path):
    work_dir = str(tmp_path / 'dist')
    cmd = ['bash', osp.join(REPO, 'tools/dist_train.sh'), CONFIG, '2', '--work-dir', work_dir,
           '--cfg-options'] + _options(shapes, bpe_path, 2, interval=2)
    env = {'PORT': str(free_port()), 'PYTHON': sys.executable}
    rc, out = run_tool(cmd, cwd=str(tmp_path), env=env)
    assert rc == 0, out[-3000:]
    assert 'Distributed training: True' in out
    ckpt = safe_torch_load(osp.join(work_dir, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if torch.is_tensor(v) and v.is_floating_point())


@pytest.mark.slow
def test_learning_check_reaches_ap50(bpe_path, tmp_path):
    """The full from-scratch learning check (about 20 minutes on 2 cores)."""
    rc, out = run_tool([sys.executable, osp.join(REPO, 'tools/analysis_tools/learning_check.py'),
                    '--data-root', str(tmp_path / 'data'), '--work-dir',
                    str(tmp_path / 'work'), '--bpe', bpe_path], cwd=str(tmp_path), timeout=3600)
    assert rc == 0 and 'PASS' in out, out[-3000:]


def test_tools_test_prints_coco_ap_and_cgf1(shapes, bpe_path, tmp_path):
    """tools/test.py on the shapes config reports COCO box and mask AP and cgF1."""
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(CONFIG)
    cfg.model.tokenizer.bpe_path = bpe_path
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta=dict()), ckpt)
    rc, out = run_tool([sys.executable, osp.join(REPO, 'tools/test.py'), CONFIG, ckpt, '--work-dir',
                    str(tmp_path / 'test'), '--out', str(tmp_path / 'results.pkl'),
                    '--cfg-options'] + _options(shapes, bpe_path, 1)[:8] +
                   ['test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'],
                   cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    for key in ('coco/bbox_mAP:', 'coco/bbox_mAP_50:', 'coco/segm_mAP:', 'cgf1/bbox_cgF1:',
                'cgf1/segm_cgF1:', 'cgf1/bbox_IL_MCC:'):
        assert key in out, key
    assert osp.isfile(tmp_path / 'results.pkl')


def test_learning_check_refuses_data_of_another_preset(shapes, bpe_path, tmp_path):
    """An existing data root with the compositional categories is not silently reused for the
    (distinct-preset) check: it stops before training, naming the file."""
    rc, out = run_tool([sys.executable, osp.join(REPO, 'tools/analysis_tools/learning_check.py'),
                    '--data-root', shapes, '--work-dir', str(tmp_path / 'work'), '--bpe',
                    bpe_path], cwd=str(tmp_path))
    assert rc != 0
    assert 'not those of --preset distinct' in out and '_annotations.coco.json' in out
    assert not osp.exists(tmp_path / 'work')
