"""InteractiveClickMetric against figures computed by hand."""
import numpy as np
import pytest
import torch
from mmdet.registry import METRICS
from mmdet.structures import DetDataSample

import mmsam3  # noqa: F401  (registers the metric)
from mmsam3.evaluation.functional import next_click, number_of_clicks, summarize_click_ious

A = [0.50, 0.86, 0.91, 0.95]  # NoC@85 2, NoC@90 3
B = [0.90, 0.92, 0.93, 0.94]  # NoC@85 1, NoC@90 1
C = [0.20, 0.40, 0.60, 0.88]  # NoC@85 4, never 0.90 -> NoC@90 = cap 4, one failure


def _sample(rows):
    s = DetDataSample()
    s.click_ious = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    return s.to_dict()


def test_metric_matches_hand_computed_figures():
    metric = METRICS.build(dict(type='InteractiveClickMetric', max_clicks=4,
                                report_clicks=(1, 2, 3, 4)))
    metric.dataset_meta = {}
    metric.process({}, [_sample([A]), _sample([B, C])])
    metric.process({}, [_sample([])])  # an image without instances
    out = metric.evaluate(3)
    assert out['click/mIoU@1'] == pytest.approx((0.5 + 0.9 + 0.2) / 3, abs=1e-6)
    assert out['click/mIoU@2'] == pytest.approx((0.86 + 0.92 + 0.4) / 3, abs=1e-6)
    assert out['click/mIoU@3'] == pytest.approx((0.91 + 0.93 + 0.6) / 3, abs=1e-6)
    assert out['click/mIoU@4'] == pytest.approx((0.95 + 0.94 + 0.88) / 3, abs=1e-6)
    assert out['click/NoC@85'] == pytest.approx((2 + 1 + 4) / 3)
    assert out['click/NoC@90'] == pytest.approx((3 + 1 + 4) / 3)
    assert out['click/NoF@85'] == 0 and out['click/NoF@90'] == 1
    assert out['click/num_objects'] == 3


def test_default_cap_is_twenty_clicks():
    ious = np.full((2, 20), 0.5)
    ious[0, 6:] = 0.95  # reaches both thresholds at click 7
    out = summarize_click_ious(ious)
    assert out['NoC@85'] == pytest.approx((7 + 20) / 2)
    assert out['NoF@90'] == 1
    assert set(out) >= {'mIoU@1', 'mIoU@5', 'mIoU@20', 'NoC@85', 'NoC@90', 'NoF@85', 'NoF@90'}
    noc, ok = number_of_clicks(ious, 0.9, 20)
    assert noc.tolist() == [7, 20] and ok.tolist() == [True, False]


def test_click_ious_from_the_simulator_on_a_drawn_object():
    """Two clicks on a hand-drawn 'L': the first at the centre of its larger arm, the second
    one in the part the first prediction missed; the metric then counts them."""
    gt = np.zeros((10, 10), bool)
    gt[1:9, 1:4] = True   # vertical arm, 8 x 3 (24 px)
    gt[6:9, 4:9] = True   # foot, 3 x 5 (15 px); one region of 39 px
    first = next_click(np.zeros_like(gt), gt)
    assert (first.x, first.y, first.is_positive) == (2, 2, True)
    pred1 = np.zeros_like(gt)
    pred1[1:9, 1:4] = True  # the arm found after click 1: IoU 24 / 39
    second = next_click(pred1, gt)
    assert (second.x, second.y, second.is_positive) == (5, 7, True)
    ious = [[24 / 39, 1.0, 1.0, 1.0]]
    out = summarize_click_ious(ious, max_clicks=4, report_clicks=(1, 2))
    assert out['mIoU@1'] == pytest.approx(24 / 39) and out['NoC@85'] == 2


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='max_clicks'):
        METRICS.build(dict(type='InteractiveClickMetric', max_clicks=0))
    metric = METRICS.build(dict(type='InteractiveClickMetric', max_clicks=20))
    metric.dataset_meta = {}
    metric.process({}, [_sample([A])])
    with pytest.raises(ValueError, match='at least max_clicks'):
        metric.evaluate(1)
    metric = METRICS.build(dict(type='InteractiveClickMetric'))
    with pytest.raises(KeyError, match='click_ious'):
        metric.process({}, [DetDataSample().to_dict()])
