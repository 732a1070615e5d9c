"""tools/analysis_tools/analyze_logs.py on a real mmengine log of 6 tiny-SAM-3 iterations.

The fixture ``tests/data/logs/sam3_tiny_shapes_6iters.json`` is the ``vis_data/scalars.json`` of
``tools/train.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py`` run for 6 iterations (logger interval 1,
validation every 3 iterations) on 4 synthetic-shapes images.
"""
import json
import os.path as osp

import numpy as np
import pytest
# tools/analysis_tools is on sys.path through tests/conftest.py.
from analyze_logs import load_json_log, main, resolve_key, series, train_time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOG = osp.join(REPO, 'tests', 'data', 'logs', 'sam3_tiny_shapes_6iters.json')


def _raw_lines():
    with open(LOG) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_load_splits_train_and_val():
    log = load_json_log(LOG)
    raw = _raw_lines()
    assert [r['step'] for r in log['train']] == [1, 2, 3, 4, 5, 6]
    # validation is logged with step 0; it is placed at the last training iteration before it
    assert [r['step'] for r in log['val']] == [3, 6]
    steps, losses = series(log, resolve_key(log, 'loss'))
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert losses.tolist() == [r['loss'] for r in raw if 'loss' in r]
    name = resolve_key(log, 'bbox_mAP_50')
    assert name == 'coco/bbox_mAP_50'
    steps, ap = series(log, name)
    assert steps.tolist() == [3, 6]
    assert ap.tolist() == [r['coco/bbox_mAP_50'] for r in raw if 'coco/bbox_mAP_50' in r]


def test_unknown_key_names_what_exists():
    log = load_json_log(LOG)
    with pytest.raises(KeyError, match="no 'bbox_AP'.*coco/bbox_mAP"):
        resolve_key(log, 'bbox_AP', LOG)


def test_cal_train_time(capsys):
    times = [r['time'] for r in _raw_lines() if 'loss' in r]
    (t, ) = main(['cal_train_time', LOG])
    assert t['mean'] == pytest.approx(np.mean(times[1:]))  # the warm-up iteration left out
    assert 'average iter time' in capsys.readouterr().out
    (t, ) = main(['cal_train_time', LOG, '--include-outliers'])
    assert t['mean'] == pytest.approx(np.mean(times))


def test_plot_curve_writes_figure(tmp_path, capsys):
    out = str(tmp_path / 'curve.png')
    main(['plot_curve', LOG, '--keys', 'loss', 'bbox_mAP_50', '--out', out, '--title', 't'])
    printed = capsys.readouterr().out
    assert 'metric is loss (6 points)' in printed
    assert 'metric is coco/bbox_mAP_50 (2 points)' in printed
    import matplotlib.image
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0
    with pytest.raises(ValueError, match='--legend needs 2 names'):
        main(['plot_curve', LOG, '--keys', 'loss', 'bbox_mAP_50', '--legend', 'a', '--out', out])


def test_bad_files(tmp_path):
    bad = tmp_path / 'log.json'
    bad.write_text('{"step": 1, "loss": 1.0}\nnot json\n')
    with pytest.raises(ValueError, match='line 2: not json'):
        load_json_log(str(bad))
    with pytest.raises(ValueError, match='not a json log'):
        load_json_log(str(tmp_path / 'log.txt'))
    bad.write_text('{"step": 1, "loss": 1.0, "time": 0.5}\n')
    with pytest.raises(KeyError, match='too few timed training lines'):
        train_time(load_json_log(str(bad)))


def test_learning_check_reads_logs_through_it(tmp_path):
    import shutil

    from learning_check import read_log

    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    shutil.copy(LOG, vis / 'scalars.json')
    losses, evals = read_log(str(tmp_path))
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in evals] == [3, 6] and 'coco/bbox_mAP_50' in evals[0][1]
    with pytest.raises(FileNotFoundError, match='no training log'):
        read_log(str(tmp_path / 'empty'))
