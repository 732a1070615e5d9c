"""InverseSquareRootLR (mmengine scheduler) against the official scheduler function."""
import pytest
import torch

import mmsam3  # noqa: F401
from mmsam3.engine.optimizers import InverseSquareRootLR, inverse_sqrt_factor
from mmsam3.testing import official_sam3


def _optimizer(lrs=(8e-5, 2.5e-5)):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.AdamW([dict(params=[p], lr=lr) for p, lr in zip(params, lrs)])


def _official_function():
    _, sched_mod = official_sam3.import_official_optim()
    return sched_mod.InverseSquareRootParamScheduler


@pytest.mark.parametrize('total,warmup,cooldown,timescale',
                         [(100, 20, 20, 20), (60, 5, 10, 40), (30, 0, 0, 20)])
@pytest.mark.requires_official
def test_matches_official(total, warmup, cooldown, timescale):
    Official = _official_function()
    lrs = (8e-5, 2.5e-5)
    opt = _optimizer(lrs)
    sched = InverseSquareRootLR(opt, warmup_steps=warmup, cooldown_steps=cooldown,
                                timescale=timescale, begin=0, end=total, by_epoch=False)
    refs = [Official(base, warmup, cooldown, timescale) for base in lrs]
    for s in range(total):
        expected = [ref(step=s, where=s / total) for ref in refs]
        got = [g['lr'] for g in opt.param_groups]
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-20), s
        opt.step()
        sched.step()


def test_curve_shape_and_epoch_conversion():
    f = [inverse_sqrt_factor(s, 1000, 20, 20, 20) for s in range(1000)]
    assert f[0] == 0 and f[10] == pytest.approx(0.5) and f[20] == 1.0
    assert f[80] == pytest.approx(0.5)  # 1 / sqrt(80 / 20)
    assert f[999] == pytest.approx(1 / 20 / (999 / 20)**0.5)
    opt = _optimizer((1.0, ))
    sched = InverseSquareRootLR.build_iter_from_epoch(
        opt, begin=0, end=20, by_epoch=True, epoch_length=50)
    assert (sched.begin, sched.end, sched.total_steps, sched.by_epoch) == (0, 1000, 1000, False)
    assert sched.warmup_steps == 20  # warm-up / cool-down stay in iterations
    with pytest.raises(ValueError, match='finite'):
        InverseSquareRootLR(_optimizer((1.0, )), cooldown_steps=20)
