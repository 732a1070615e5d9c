"""RandomizeInputBbox: Gaussian jitter of the exemplar boxes (``prompt_boxes``), checked against
the official ``sam3.train.transforms.point_sampling.noise_box``."""
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

from mmsam3.datasets.transforms import RandomizeInputBbox

IMG_HW = (100, 120)  # (h, w)


def prompt_boxes():
    """Three prompts: two boxes, none, one box touching the bottom-right corner."""
    return [torch.tensor([[10., 20., 50., 60.], [0., 0., 30., 15.]]),
            torch.zeros((0, 4)),
            torch.tensor([[90., 70., 120., 100.]])]


def official_noise_box():
    from sam3.train.transforms.point_sampling import noise_box
    return noise_box


@pytest.mark.requires_official
@pytest.mark.parametrize('std,max_,min_area', [(0.1, None, 0.0), (0.1, 2.0, 0.0),
                                               (0.5, None, 0.0), (0.3, 3.0, 400.0),
                                               (0.1, None, 1e9)])
@pytest.mark.parametrize('seed', [0, 1, 7])
def test_matches_official_noise_box(std, max_, min_area, seed):
    noise_box = official_noise_box()
    torch.manual_seed(seed)
    expected = []
    for boxes in prompt_boxes():
        expected.append(torch.stack([
            noise_box(b.clone(), IMG_HW, box_noise_std=std, box_noise_max=max_,
                      min_box_area=min_area) for b in boxes]) if len(boxes) else boxes)
    next_official = torch.randn(1)
    torch.manual_seed(seed)
    ours = RandomizeInputBbox(std, max_, min_area)(
        dict(prompt_boxes=prompt_boxes(), img_shape=IMG_HW))['prompt_boxes']
    assert torch.equal(torch.randn(1), next_official)  # same number of draws
    assert len(ours) == len(expected)
    for o, e in zip(ours, expected):
        assert o.dtype == torch.float32 and o.shape == e.shape
        assert torch.allclose(o, e.float(), atol=1e-6, rtol=0), (o, e)
    orig = torch.cat(prompt_boxes())
    moved = ~torch.isclose(torch.cat(ours), orig).all(dim=1)
    if min_area >= 1e9:  # every noised box is too small: all fall back to the original
        assert not moved.any()
    else:
        assert moved.any()
    if max_ is not None:
        assert ((torch.cat(ours) - orig).abs() <= max_ + 1e-5).all()


def test_fallback_keeps_original_box():
    # a min area >= the image area makes every draw fall back; a cap of 0 leaves the box in place
    torch.manual_seed(0)
    r = RandomizeInputBbox(0.5, minimum_box_area=float(IMG_HW[0] * IMG_HW[1]))(
        dict(prompt_boxes=[torch.tensor([[10., 20., 50., 60.]])], img_shape=IMG_HW))
    assert r['prompt_boxes'][0].tolist() == [[10., 20., 50., 60.]]
    torch.manual_seed(0)
    r = RandomizeInputBbox(0.5, box_noise_max=0.0)(
        dict(prompt_boxes=[torch.tensor([[10., 20., 50., 60.]])], img_shape=IMG_HW))
    assert r['prompt_boxes'][0].tolist() == [[10., 20., 50., 60.]]


def test_zero_std_is_identity():
    boxes = prompt_boxes()
    torch.manual_seed(3)
    r = RandomizeInputBbox(0.0, box_noise_max=5.0)(dict(prompt_boxes=boxes, img_shape=IMG_HW))
    for o, e in zip(r['prompt_boxes'], prompt_boxes()):
        assert torch.equal(o, e)
    after = torch.randn(1)
    torch.manual_seed(3)
    assert torch.equal(torch.randn(1), after)  # no random numbers were drawn


@pytest.mark.parametrize('seed', range(5))
def test_boxes_stay_inside_image(seed):
    torch.manual_seed(seed)
    h, w = IMG_HW
    boxes = torch.tensor([[5., 5., 115., 95.], [90., 70., 115., 95.], [2., 2., 8., 8.]] * 20)
    r = RandomizeInputBbox(2.0)(dict(prompt_boxes=[boxes], img_shape=(h, w, 3)))
    out = r['prompt_boxes'][0]
    assert out.shape == boxes.shape and out.dtype == torch.float32
    assert (out >= 0).all() and (out[:, 0::2] <= w).all() and (out[:, 1::2] <= h).all()
    assert not torch.equal(out, boxes)
    # at this noise level some corners must have been clipped onto the border
    assert (out == 0).any() and ((out[:, 0::2] == w).any() or (out[:, 1::2] == h).any())


def test_prompts_without_boxes_untouched_and_numpy_input():
    empty = torch.zeros((0, 4))
    arr = np.array([[10., 20., 50., 60.]], np.float32)
    torch.manual_seed(0)
    r = RandomizeInputBbox(0.1)(dict(prompt_boxes=[empty, None, arr], img_shape=IMG_HW))
    out = r['prompt_boxes']
    assert out[0] is empty and out[1] is None
    assert isinstance(out[2], torch.Tensor) and out[2].dtype == torch.float32
    assert out[2].shape == (1, 4) and not np.allclose(out[2].numpy(), arr)
    assert arr.tolist() == [[10., 20., 50., 60.]]  # input not modified in place
    # no prompt_boxes key: nothing changes, nothing is drawn
    res = dict(img_shape=IMG_HW, texts=['cat'])
    torch.manual_seed(0)
    assert RandomizeInputBbox(0.1)(dict(res)) == res
    after = torch.randn(1)
    torch.manual_seed(0)
    assert torch.equal(torch.randn(1), after)


def test_in_place_safety_and_missing_img_shape():
    boxes = torch.tensor([[10., 20., 50., 60.]])
    torch.manual_seed(0)
    RandomizeInputBbox(0.1)(dict(prompt_boxes=[boxes], img_shape=IMG_HW))
    assert boxes.tolist() == [[10., 20., 50., 60.]]
    with pytest.raises(KeyError, match='img_shape'):
        RandomizeInputBbox(0.1)(dict(prompt_boxes=[boxes]))


def test_bad_args():
    with pytest.raises(ValueError, match='box_noise_std'):
        RandomizeInputBbox(-0.1)
    with pytest.raises(ValueError, match='box_noise_max'):
        RandomizeInputBbox(0.1, box_noise_max=-1.0)
    t = RandomizeInputBbox(0.1, 20, 1.0)
    assert repr(t) == ('RandomizeInputBbox(box_noise_std=0.1, box_noise_max=20.0, '
                       'minimum_box_area=1.0)')


def test_builds_from_registry_in_pipeline():
    t = TRANSFORMS.build(dict(type='RandomizeInputBbox', box_noise_std=0.1))
    assert isinstance(t, RandomizeInputBbox) and t.box_noise_std == 0.1
    boxes = np.array([[10., 20., 50., 60.], [60., 10., 110., 90.]], np.float32)
    res = dict(img_shape=IMG_HW, gt_bboxes=HorizontalBoxes(boxes),
               gt_bboxes_labels=np.array([0, 1]), gt_ignore_flags=np.zeros(2, bool),
               prompt_texts=('cat', 'dog', 'bird'))
    pipe = Compose([dict(type='BuildPromptQueries'),
                    dict(type='TextQueryToVisual', probability=1.0),
                    dict(type='RandomizeInputBbox', box_noise_std=0.1, box_noise_max=20.0)])
    np.random.seed(0)
    torch.manual_seed(0)
    r = pipe(res)
    assert r['prompt_labels'] == [0, 1, 2]
    pb = r['prompt_boxes']
    assert [len(b) for b in pb] == [1, 1, 0]
    for k in range(2):
        assert pb[k].dtype == torch.float32 and pb[k].shape == (1, 4)
        diff = (pb[k][0] - torch.from_numpy(boxes[k])).abs()
        assert diff.max() > 0 and diff.max() <= 20.0
    assert r['prompt_box_labels'][0].tolist() == [1]
