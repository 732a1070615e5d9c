"""FSDP through FlexibleRunner + FSDPStrategy on CPU (gloo, 2 processes) against DDP.

The tiny SAM 3 from the same initial weights, on the same deterministic batches: 3 steps of
DDP (``tools/dist_train.sh`` with the plain config) and 2 steps of FSDP, saved, then resumed for
the third step (``--resume``). Losses of every step and the weights after step 3 agree to 1e-5;
the FSDP checkpoint is a full state dict that loads strictly into the plain model. AdamW, as
the recipes train: its two moments per parameter are what a resume must bring back (on a CPU,
torch's full optimizer state dict once saved ``exp_avg`` as a copy of ``exp_avg_sq``; see
``mmsam3/utils/compat.py``).
"""
import json
import os
import os.path as osp
import sys

import pytest
import torch

from mmsam3.utils import safe_torch_load
from tests.test_tools.test_train_sam3_shapes import _options
from tests.utils import free_port, run_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DDP_CFG = osp.join(REPO, 'configs', 'sam3', 'sam3_tiny_scratch_1xb2-5k_shapes.py')
FSDP_CFG = osp.join(REPO, 'configs', 'sam3', 'sam3_tiny_scratch-fsdp_2xb2-5k_shapes.py')

# Same images in the same order on both runs: no random resize / offset, no shuffling.
DETERMINISTIC = '''
_base_ = [{base!r}]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='FilterCrowds'),
    dict(type='Resize', scale=(168, 168), keep_ratio=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(0., 0.), keep_empty=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        sampler=dict(shuffle=False), dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False)
load_from = {init!r}
# AdamW (two moments per parameter to resume) at a constant lr that moves every weight well
# beyond the tolerance; eps 1e-4 keeps the update of near-zero gradients from amplifying
# rounding; no weight decay: FSDP gives parameters that a step does not use a zero gradient
# where DDP leaves none, and decay would then move them under FSDP only.
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, eps=1e-4,
                                    weight_decay=0.0))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=1)]
'''


def _losses(work_dir):
    losses = {}
    for d in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, d, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            with open(path) as f:
                for line in f:
                    rec = json.loads(line)
                    if 'loss' in rec:
                        losses[rec['step']] = rec['loss']
    return losses


def _plain_model(bpe_path):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(DDP_CFG)
    cfg.model.tokenizer.bpe_path = bpe_path
    return MODELS.build(cfg.model)


def test_fsdp_matches_ddp_saves_full_state_and_resumes(shapes, bpe_path, tmp_path):
    torch.manual_seed(0)
    init = str(tmp_path / 'init.pth')
    torch.save({'state_dict': _plain_model(bpe_path).state_dict()}, init)
    configs = {}
    for name, base in (('ddp', DDP_CFG), ('fsdp', FSDP_CFG)):
        configs[name] = str(tmp_path / f'{name}.py')
        with open(configs[name], 'w') as f:
            f.write(DETERMINISTIC.format(base=base, init=init))

    def launch(name, work_dir, max_iters, interval, *extra):
        cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), configs[name], '2',
               '--work-dir', work_dir, *extra, '--cfg-options',
               *_options(shapes, bpe_path, max_iters, interval)]
        rc, out = run_tool(cmd, cwd=str(tmp_path),
                           env={'PORT': str(free_port()), 'PYTHON': sys.executable})
        assert rc == 0, out[-4000:]
        return out

    ddp, fsdp = str(tmp_path / 'ddp'), str(tmp_path / 'fsdp')
    launch('ddp', ddp, 3, 3)
    out = launch('fsdp', fsdp, 2, 2)
    assert 'FSDPStrategy' in out or 'FullyShardedDataParallel' in out, out[-3000:]
    out = launch('fsdp', fsdp, 3, 1, '--resume')
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]

    ddp_losses, fsdp_losses = _losses(ddp), _losses(fsdp)
    assert sorted(ddp_losses) == [1, 2, 3] and sorted(fsdp_losses) == [1, 2, 3]
    for step in (1, 2, 3):
        assert fsdp_losses[step] == pytest.approx(ddp_losses[step], rel=1e-5, abs=1e-5), step

    a = safe_torch_load(osp.join(ddp, 'iter_3.pth'))['state_dict']
    b = safe_torch_load(osp.join(fsdp, 'iter_3.pth'))['state_dict']
    assert sorted(a) == sorted(b)
    init_sd = safe_torch_load(init)['state_dict']
    moved = 0
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=1e-5, atol=1e-5, msg=key)
        moved += int(value.is_floating_point() and not torch.equal(value, init_sd[key]))
    assert moved > 10  # the steps did update the weights

    model = _plain_model(bpe_path)
    model.load_state_dict(b, strict=True)
