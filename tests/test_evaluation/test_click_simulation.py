"""The click simulator on hand-drawn masks whose next click is known."""
import numpy as np
import pytest

from mmsam3.evaluation.functional import Click, mask_iou_single, masks_iou, next_click


def _box(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return m


def test_first_click_is_the_centre_of_the_object():
    gt = _box((9, 9), (1, 7), (1, 7))  # 7 x 7 square: (4, 4) is 4 px from the background
    click = next_click(np.zeros_like(gt), gt)
    assert click == Click(x=4, y=4, is_positive=True) and click.label == 1


def test_false_positive_region_gives_a_negative_click_image_border_is_boundary():
    gt = _box((12, 12), (1, 5), (1, 5))
    extra = _box((12, 12), (7, 11), (6, 10))  # 5 x 5 block on the bottom border
    click = next_click(gt | extra, gt)
    # padded distance transform: (row 9, col 8) is 3 px from the block's edges and the border
    assert click == Click(x=8, y=9, is_positive=False) and click.label == 0


def test_largest_error_region_wins_and_ties_go_to_false_negatives():
    gt = _box((10, 10), (2, 3), (2, 3)) | _box((10, 10), (6, 8), (6, 8))
    pred = _box((10, 10), (6, 8), (6, 8)) | _box((10, 10), (9, 9), (0, 4))
    # FN: 2 x 2 (area 4); FP: the 1 x 5 strip on the bottom border (area 5), all at distance 1
    assert next_click(pred, gt) == Click(x=0, y=9, is_positive=False)
    pred_tie = _box((10, 10), (6, 8), (6, 8)) | _box((10, 10), (9, 9), (0, 3))  # FP area 4
    # FN region rows 2-3, cols 2-3: every pixel 1 px from the boundary, first in raster order
    assert next_click(pred_tie, gt) == Click(x=2, y=2, is_positive=True)


def test_the_largest_of_several_false_negative_regions():
    gt = _box((20, 20), (0, 1), (0, 1)) | _box((20, 20), (8, 16), (5, 17))  # 4 px vs 9 x 13
    click = next_click(np.zeros_like(gt), gt)
    assert click.is_positive and click.y == 12 and 9 <= click.x <= 13
    assert click == Click(x=9, y=12, is_positive=True)  # first of the tied centre row


def test_exact_prediction_gives_no_click_and_iou_helpers():
    gt = _box((6, 6), (1, 3), (1, 4))
    assert next_click(gt, gt) is None
    pred = _box((6, 6), (1, 3), (1, 2))
    assert mask_iou_single(pred, gt) == pytest.approx(6 / 12)
    assert mask_iou_single(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    ious = masks_iou(np.stack([pred, gt, np.zeros_like(gt)]),
                     np.stack([gt, gt, np.zeros_like(gt)]))
    np.testing.assert_allclose(ious, [0.5, 1.0, 1.0])


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='differ in size'):
        next_click(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r'2-D \(H, W\)'):
        next_click(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match='two \\(N, H, W\\) stacks'):
        masks_iou(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))
