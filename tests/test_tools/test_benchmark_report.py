"""tools/analysis_tools/benchmark.py's interactive report on the tiny model: the fp32 / bf16
figures behind the printed ratios come from clean timed runs (no stage hook, wrapped method or
FLOP counter in place), the profile and FLOP passes are apart from them, the standalone fp32
``set_image`` comes from another process, both bf16 ratios are printed from the same figures,
and a click does not rerun the ViT. No timing is asserted (speed is never a test)."""
import os
import re
import statistics

import numpy as np
import pytest
import torch

import benchmark
from benchmark import StageTimer, instrumented, stage_flops

pytestmark = pytest.mark.requires_official


@pytest.fixture(scope='module')
def tiny_pair(tmp_path_factory, bpe_path):
    args = benchmark.parse_args(['--size', 'tiny', '--bpe', bpe_path])
    official, weights = benchmark._build_official(args, str(tmp_path_factory.mktemp('w')))
    ours, cfg = benchmark._build_ours(args, weights)
    ours.cfg = cfg
    return official, ours


def _floats(pattern, text):
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return [float(g) for g in match.groups()]


def test_instrumented_names_what_is_attached(tiny_pair):
    from get_flops import flop_counter_mode

    _, ours = tiny_pair
    assert instrumented(ours) == []
    timer = StageTimer(ours, torch.device('cpu'))
    try:
        reasons = instrumented(ours)
        assert any('StageTimer' in r for r in reasons), reasons
        assert any('image terms' in r for r in reasons), reasons
    finally:
        timer.remove()
    assert instrumented(ours) == []  # removed: hooks and wrapped methods gone
    with flop_counter_mode():
        assert any('TorchDispatchMode' in r for r in instrumented(ours))
    assert instrumented(ours) == []


def test_stage_flops_keep_the_two_necks_apart(tiny_pair):
    from mmsam3.apis import SAM3Predictor

    _, ours = tiny_pair
    predictor = SAM3Predictor(ours, dtype='fp32')
    bgr = np.ascontiguousarray(benchmark._synthetic_image()[:, :, ::-1])
    flops = stage_flops(ours, lambda: predictor.set_image(bgr))
    assert flops['neck'] > 0 and flops['tracker neck'] > 0 and flops['ViT'] > 0
    stages = sum(v for k, v in flops.items() if k != 'total')
    assert stages <= flops['total']  # counted by difference: no stage counted twice
    assert instrumented(ours) == []  # hooks and wrappers removed afterwards


def test_interactive_report_from_clean_interleaved_runs(bpe_path, capsys, monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    report = benchmark.main(['--size', 'tiny', '--runs', '2', '--warmup', '1', '--threads', '1',
                             '--peak-size', '256', '--click-runs', '2', '--skip-end-to-end',
                             '--bpe', bpe_path])
    out = capsys.readouterr().out
    dtypes = report['dtypes']
    assert dtypes[0] == 'fp32' and set(dtypes) <= {'fp32', 'bf16'}
    for name in dtypes:
        timed = report['timed'][name]
        # 2 runs x (set_image, first phrase, second phrase), each checked clean when timed
        assert len(timed['image']) == 2 and len(timed['checks']) == 6
        assert all(check == [] for check in timed['checks']), timed['checks']
        assert report['timings'][name]['clean']
        assert report['timings'][name]['image'] == statistics.median(timed['image'])
        printed = _floats(rf'\[{name}\] set_image median ([\d.]+) s', out)[0]
        assert printed == pytest.approx(report['timings'][name]['image'], abs=6e-4)
        assert f'[{name}] set_image median' in out and 'clean timed runs' in out
        # the profile ran with its hooks on: it is not one of the timed runs
        assert report['profile_checks'][name], 'the profile pass should be instrumented'
        assert report['profile'][name]['ViT'] > 0
    assert all(check == [] for check in report['ten_checks'])
    assert 'one run with the stage hooks on (not the timed runs above' in out

    standalone = report['standalone']
    assert standalone['pid'] != os.getpid() and standalone['threads'] == 1
    assert len(standalone['image_runs']) == 2
    section, alone = _floats(r'fp32 set_image: section ([\d.]+) s .*standalone ([\d.]+) s', out)
    assert section == pytest.approx(report['timings']['fp32']['image'], abs=6e-4)
    assert alone == pytest.approx(standalone['image'], abs=6e-4)
    ratios = report['ratios']
    assert ratios['section_vs_standalone'] == pytest.approx(
        report['timings']['fp32']['image'] / standalone['image'])
    if 'bf16' in dtypes:
        t = report['timings']
        assert ratios['one_section'] == pytest.approx(t['fp32']['one'] / t['bf16']['one'])
        assert ratios['one_standalone'] == pytest.approx(
            (standalone['image'] + t['fp32']['first']) / t['bf16']['one'])
        got = _floats(r'image \+ 1 phrase: ([\d.]+)x faster than the section\'s fp32.*, '
                      r'([\d.]+)x faster than standalone', out)
        assert got == pytest.approx([ratios['one_section'], ratios['one_standalone']], abs=6e-3)
        assert re.search(r'the two fp32 set_image figures (agree|DISAGREE)', out)
    else:
        assert 'bf16 vs fp32: skipped' in out

    clicks = report['clicks']
    assert clicks['vit_at_set_image'] == 1 and clicks['vit_during_clicks'] == 0
    assert clicks['clean'] and len(clicks['click_runs']) == 2
    meta = report['meta']
    assert meta['vit_at_set_image'] == 1 and meta['vit_during_clicks'] == 0
    assert clicks['ratio'] == pytest.approx(clicks['click'] / meta['click'])
    assert 'one click, predictor / Meta predict_inst' in out
    assert 'ViT rerun: ours no, Meta no' in out


@pytest.mark.parametrize('argv, message', [
    (['--runs', '0'], '--runs must be >= 1'),
    (['--warmup', '-1'], '--warmup must be >= 0'),
    (['--click-runs', '0'], '--click-runs must be >= 1'),
])
def test_bad_counts_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(argv)
    assert message in capsys.readouterr().err
