"""TrainingHealthHook + SafeOptimWrapper in real mmengine Runner runs (toy model, CPU)."""
import glob
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmsam3  # noqa: F401
from mmsam3.engine.hooks import (NonFiniteCheckpointError, TrainingDivergedError,
                                 TrainingHealthHook)
from mmsam3.engine.optimizers import SafeOptimWrapper, make_optim_wrapper_safe


class _Data(Dataset):

    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g))


class NaNAtIters(BaseModel):
    """Linear regression whose loss is NaN at the chosen (0-based) training iterations."""

    def __init__(self, nan_iters=()):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.nan_iters = set(nan_iters)
        self.calls = 0
        self.seen_weights = []  # weight norm at each forward, to check skipped updates

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
        out = self.linear(x)
        if mode != 'loss':
            return out
        self.seen_weights.append(self.linear.weight.detach().clone())
        loss = (out - 1).pow(2).mean()
        if self.calls in self.nan_iters:
            loss = loss * float('nan')
        self.calls += 1
        return dict(loss=loss)


def _runner(tmp_path, model, max_iters, hook_cfg=None, ckpt_interval=2, optim_type='OptimWrapper',
            scheduler=True, accumulative_counts=1):
    from mmengine.runner import Runner
    hooks = [] if hook_cfg is None else [dict(type='TrainingHealthHook', **hook_cfg)]
    return Runner(
        model=model,
        work_dir=str(tmp_path),
        experiment_name=f'health_{uuid.uuid4().hex[:8]}',
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0, collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(type=optim_type, optimizer=dict(type='SGD', lr=0.1),
                           clip_grad=dict(max_norm=10.0),
                           accumulative_counts=accumulative_counts),
        param_scheduler=(dict(type='InverseSquareRootLR', warmup_steps=0, cooldown_steps=2,
                              timescale=4, begin=0, end=max_iters, by_epoch=False)
                         if scheduler else None),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=ckpt_interval,
                                           by_epoch=False),
                           logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=hooks,
        default_scope='mmdet',
        log_level='WARNING')


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, TrainingHealthHook))


def _assert_checkpoints_finite(work_dir):
    files = glob.glob(osp.join(str(work_dir), '*.pth'))
    assert files
    for f in files:
        state = torch.load(f, map_location='cpu', weights_only=False)['state_dict']
        for k, v in state.items():
            assert torch.isfinite(v).all(), (f, k)


def test_skips_and_counts(tmp_path):
    model = NaNAtIters(nan_iters={3, 6})
    runner = _runner(tmp_path, model, 8, dict(max_consecutive_bad=3))
    runner.train()
    hook = _hook(runner)
    assert isinstance(runner.optim_wrapper, SafeOptimWrapper.__mro__[1])  # upgraded in place
    assert (hook.num_bad_steps, hook.num_rollbacks, hook.consecutive_bad) == (2, 0, 0)
    assert runner.optim_wrapper.num_skipped_steps == 2
    w = model.seen_weights
    # The update of a NaN iteration is skipped: the weights seen by the next forward are equal.
    assert torch.equal(w[3], w[4]) and torch.equal(w[6], w[7])
    assert not torch.equal(w[2], w[3]) and not torch.equal(w[4], w[5])
    assert torch.isfinite(model.linear.weight).all()
    _assert_checkpoints_finite(tmp_path)


def test_rolls_back_after_n_bad_steps(tmp_path):
    # Checkpoints every 2 iters (1-based names); NaN at 0-based iters 4, 5, 6 (1-based 5-7). The
    # latest checkpoint, iter_6, was saved after a skipped step: its weights are still good (the
    # same as iter_4's) and it is the rollback target.
    model = NaNAtIters(nan_iters={4, 5, 6})
    runner = _runner(tmp_path, model, 9, dict(max_consecutive_bad=3, lr_factor=0.5),
                     ckpt_interval=2)
    saved = {}
    orig = TrainingHealthHook._rollback

    def spy(self, runner, path, model_only):
        saved['lr_before'] = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]
        saved['sched_base'] = list(runner.param_schedulers[0].base_values)
        orig(self, runner, path, model_only)
        saved['lr_after'] = [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups]

    TrainingHealthHook._rollback = spy
    try:
        runner.train()
    finally:
        TrainingHealthHook._rollback = orig
    hook = _hook(runner)
    assert hook.num_rollbacks == 1 and hook.num_bad_steps == 3
    assert hook.rollback_log[0][1].endswith('iter_6.pth')
    assert saved['lr_after'] == pytest.approx([v * 0.5 for v in saved['lr_before']])
    assert runner.param_schedulers[0].base_values == pytest.approx(
        [v * 0.5 for v in saved['sched_base']])
    # The model after the rollback (seen at 0-based iter 7) equals the iter_6 checkpoint, which
    # equals iter_4's weights (iters 5, 6 were skipped).
    ckpts = [torch.load(osp.join(str(tmp_path), f'iter_{i}.pth'), map_location='cpu',
                        weights_only=False)['state_dict']['linear.weight'] for i in (4, 6)]
    assert torch.equal(model.seen_weights[7], ckpts[1]) and torch.equal(ckpts[0], ckpts[1])
    _assert_checkpoints_finite(tmp_path)


def test_stop_mode_raises_clear_message(tmp_path):
    model = NaNAtIters(nan_iters={2, 3})
    runner = _runner(tmp_path, model, 8, dict(max_consecutive_bad=2, on_repeated='stop'))
    with pytest.raises(TrainingDivergedError, match=r'2 consecutive .* iter 4.*on_repeated="stop"'
                       r'.*iter_2\.pth'):
        runner.train()
    _assert_checkpoints_finite(tmp_path)


def test_rollback_without_checkpoint_stops(tmp_path):
    model = NaNAtIters(nan_iters={0, 1})
    runner = _runner(tmp_path, model, 4, dict(max_consecutive_bad=2), ckpt_interval=100)
    with pytest.raises(TrainingDivergedError, match='cannot roll back'):
        runner.train()


def test_refuses_non_finite_checkpoint(tmp_path):
    model = NaNAtIters()
    runner = _runner(tmp_path, model, 2, dict(max_consecutive_bad=2), ckpt_interval=100)
    runner.train()
    with torch.no_grad():
        model.linear.weight[0, 0] = float('inf')
    with pytest.raises(NonFiniteCheckpointError, match='linear.weight'):
        runner.save_checkpoint(str(tmp_path), 'bad.pth')
    assert not osp.exists(osp.join(str(tmp_path), 'bad.pth'))


def test_accumulation_skips_poisoned_cycle(tmp_path):
    # accumulative_counts=2: NaN at micro-step 2 poisons the second cycle (micro-steps 2, 3).
    model = NaNAtIters(nan_iters={2})
    runner = _runner(tmp_path, model, 6, dict(max_consecutive_bad=3), accumulative_counts=2,
                     scheduler=False)
    runner.train()
    hook = _hook(runner)
    assert hook.num_bad_steps == 1
    w = model.seen_weights
    assert not torch.equal(w[1], w[2])  # first cycle stepped after micro-step 1
    assert torch.equal(w[2], w[4])  # second cycle (micro-steps 2, 3) skipped


def test_safe_wrapper_unit():
    from mmengine.optim import OptimWrapper
    p = nn.Parameter(torch.ones(2))
    wrapper = make_optim_wrapper_safe(OptimWrapper(torch.optim.SGD([p], lr=1.0)))
    (p.sum() * float('nan')).backward()
    wrapper.step()
    assert wrapper.pop_health_status() == 'nonfinite_grad'
    assert torch.equal(p.detach(), torch.ones(2))
    wrapper.zero_grad()
    wrapper.update_params(p.sum())
    assert wrapper.pop_health_status() == 'ok' and torch.equal(p.detach(), torch.zeros(2))
    assert wrapper.pop_health_status() is None
