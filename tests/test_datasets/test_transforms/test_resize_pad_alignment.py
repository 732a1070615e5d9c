"""Square resize (mmdet RandomChoiceResize, keep_ratio=False) + RandomOffsetPad keep the image,
boxes and masks (bitmap and polygon) on the same pixels."""
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

from mmsam3.datasets.transforms import RandomOffsetPad, sam3_train_scales


def test_train_scales_match_official():
    scales = sam3_train_scales(1008)
    assert scales[0] == (480, 480) and scales[-1] == (992, 992) and len(scales) == 17
    assert sam3_train_scales(672, min_size=336) == [(s, s) for s in range(352, 673, 32)]
    with pytest.raises(ValueError):
        sam3_train_scales(400, min_size=480)


def make_results(poly2mask=True):
    h, w = 60, 100  # non-square: the resize changes the aspect ratio
    img = np.zeros((h, w, 3), np.uint8)
    rects = [(10, 5, 30, 20), (60, 30, 25, 25)]
    masks = np.zeros((2, h, w), np.uint8)
    for k, (x, y, bw, bh) in enumerate(rects):
        img[y:y + bh, x:x + bw] = (0, 255, 0) if k == 0 else (255, 0, 0)
        masks[k, y:y + bh, x:x + bw] = 1
    boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in rects], np.float32)
    if poly2mask:
        gt_masks = BitmapMasks(masks, h, w)
    else:
        gt_masks = PolygonMasks([[np.array([x, y, x + bw, y, x + bw, y + bh, x, y + bh],
                                           np.float64)] for x, y, bw, bh in rects], h, w)
    return dict(img=img, img_shape=(h, w), ori_shape=(h, w), gt_bboxes=HorizontalBoxes(boxes),
                gt_bboxes_labels=np.array([0, 1]), gt_ignore_flags=np.zeros(2, bool),
                gt_masks=gt_masks)


@pytest.mark.parametrize('poly2mask', [True, False])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_boxes_and_masks_stay_on_drawn_pixels(seed, poly2mask):
    np.random.seed(seed)
    pipe = Compose([dict(type='RandomChoiceResize', scales=[(112, 112), (140, 140), (168, 168)],
                         keep_ratio=False),
                    dict(type='RandomOffsetPad', size=224)])
    r = pipe(make_results(poly2mask))
    img = r['img']
    assert img.shape == (224, 224, 3) and r['img_shape'] == (224, 224)
    top, bottom, left, right = r['pad_param'].tolist()
    s = 224 - top - bottom
    assert s == 224 - left - right and (s, s) in [(112, 112), (140, 140), (168, 168)]
    assert r['pad_offset'] == (left, top)
    # padding is zero outside the resized image
    assert img[:int(top)].sum() == 0 and img[:, :int(left)].sum() == 0
    masks = r['gt_masks']
    if not poly2mask:
        assert isinstance(masks, PolygonMasks)
        masks = masks.to_bitmap()
    assert masks.masks.shape == (2, 224, 224)
    for k, channel in enumerate((1, 0)):  # green (BGR ch 1) rect, blue (ch 0) rect
        drawn = img[..., channel] > 127
        x1, y1, x2, y2 = r['gt_bboxes'].tensor[k].tolist()
        ys, xs = np.nonzero(drawn)
        # the box is the tight box of the drawn pixels (within resize interpolation, 1.5 px)
        assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
        assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5
        m = masks.masks[k].astype(bool)
        iou = (m & drawn).sum() / (m | drawn).sum()
        assert iou > 0.85, iou
    # mapping back to the original frame: (xy - offset) / scale_factor
    sx, sy = r['scale_factor']
    back = (r['gt_bboxes'].tensor - torch.tensor([left, top, left, top])) / torch.tensor(
        [sx, sy, sx, sy])
    assert torch.allclose(back, torch.tensor([[10., 5, 40, 25], [60, 30, 85, 55]]), atol=1e-3)


def test_offset_is_random_and_fixed_mode():
    offsets = set()
    for seed in range(10):
        np.random.seed(seed)
        r = RandomOffsetPad(size=140)(dict(img=np.ones((100, 100, 3), np.uint8)))
        offsets.add(r['pad_offset'])
    assert len(offsets) > 3
    r = RandomOffsetPad(size=140, random_offset=False)(dict(img=np.ones((100, 90, 3), np.uint8)))
    assert r['pad_offset'] == (0, 0) and r['pad_param'].tolist() == [0, 40, 0, 50]


def test_pad_shifts_numpy_boxes_prompt_boxes_and_seg_map():
    np.random.seed(3)
    r = RandomOffsetPad(size=70)(dict(
        img=np.ones((50, 60, 3), np.uint8), gt_bboxes=np.array([[1., 2, 3, 4]], np.float32),
        gt_seg_map=np.zeros((50, 60), np.uint8), prompt_boxes=[torch.tensor([[1., 2, 3, 4]])]))
    left, top = r['pad_offset']
    assert r['gt_bboxes'].tolist() == [[1 + left, 2 + top, 3 + left, 4 + top]]
    assert r['prompt_boxes'][0].tolist() == [[1 + left, 2 + top, 3 + left, 4 + top]]
    assert r['gt_seg_map'].shape == (70, 70) and r['gt_seg_map'][top, left] == 0
    assert (r['gt_seg_map'] == 255).sum() == 70 * 70 - 50 * 60


def test_pad_rejects_too_large_image():
    with pytest.raises(ValueError, match=r'RandomOffsetPad\(size=64\).*a\.png is 80x60'):
        RandomOffsetPad(size=64)(dict(img=np.zeros((80, 60, 3), np.uint8), img_path='a.png'))
