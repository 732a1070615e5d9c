"""InteractivePromptSampler: SAM's first prompts and correction clicks."""
import pytest
import torch
from mmdet.registry import TASK_UTILS

import mmsam3  # noqa: F401


def _sampler(**kw):
    return TASK_UTILS.build(dict(type='InteractivePromptSampler', **kw))


def _masks():
    m = torch.zeros(3, 40, 50, dtype=torch.bool)
    m[0, 5:15, 10:30] = True
    m[1, 20:39, 0:8] = True
    m[2, 0:40, 45:50] = True
    return m


def test_first_prompt_points_are_inside_the_mask():
    g = torch.Generator().manual_seed(0)
    masks = _masks()
    for _ in range(20):
        coords, labels, is_box = _sampler(prob_box=0.0).first_prompts(masks, g)
        assert coords.shape == (3, 2, 2) and not is_box.any()
        assert (labels == torch.tensor([1, -1])).all()
        x, y = coords[:, 0, 0].long(), coords[:, 0, 1].long()
        assert masks[torch.arange(3), y, x].all()


def test_first_prompt_boxes_are_the_tight_box_with_clipped_noise():
    masks = _masks()
    exact, labels, is_box = _sampler(prob_box=1.0, box_noise_std=0.0).first_prompts(masks)
    assert is_box.all() and (labels == torch.tensor([2, 3])).all()
    assert exact.reshape(3, 4).tolist() == [[10, 5, 29, 14], [0, 20, 7, 38], [45, 0, 49, 39]]
    big = torch.zeros(1000, 140, 140, dtype=torch.bool)
    big[:, 20:120, 20:120] = True  # side ~100: std 10 px, clipped at 20 px (2 sigma)
    g = torch.Generator().manual_seed(1)
    coords, _, _ = _sampler(prob_box=1.0).first_prompts(big, g)
    shift = coords.reshape(-1, 4) - torch.tensor([20., 20., 119., 119.])
    assert shift.abs().max() <= 20 + 1e-4 and shift.abs().max() > 19
    assert 8.5 < shift.std() < 10.0  # N(0, 9.9^2) clipped at 2 sigma: std ~ 9.3


def test_first_prompts_mix_points_and_boxes():
    g = torch.Generator().manual_seed(0)
    masks = _masks().repeat(200, 1, 1)
    _, labels, is_box = _sampler().first_prompts(masks, g)
    assert 0.4 < is_box.float().mean() < 0.6
    assert (labels[is_box, 0] == 2).all() and (labels[~is_box, 0] == 1).all()


def test_correction_clicks_come_from_the_error_region():
    g = torch.Generator().manual_seed(0)
    gt = _masks()
    sampler = _sampler()
    coords, labels = sampler.correction_clicks(torch.zeros_like(gt), gt, g)  # all misses
    assert coords.shape == (3, 1, 2) and (labels == 1).all()
    x, y = coords[:, 0, 0].long(), coords[:, 0, 1].long()
    assert gt[torch.arange(3), y, x].all()
    over = gt.clone()
    over[:, 30:40, 20:40] = True  # the objects are covered, plus a false-positive block
    for _ in range(10):
        coords, labels = sampler.correction_clicks(over, gt, g)
        x, y = coords[:, 0, 0].long(), coords[:, 0, 1].long()
        assert (labels == 0).all() and (over & ~gt)[torch.arange(3), y, x].all()
    coords, labels = sampler.correction_clicks(gt, gt, g)  # no error: a positive click on it
    assert (labels == 1).all()


def test_object_cap_and_bad_input():
    sampler = _sampler(max_objects=4)
    assert sampler.select_objects(3).tolist() == [0, 1, 2]
    sel = sampler.select_objects(10, torch.Generator().manual_seed(0))
    assert len(sel) == 4 and len(set(sel.tolist())) == 4 and sel.max() < 10
    with pytest.raises(ValueError, match='max_objects'):
        _sampler(max_objects=0)
    with pytest.raises(ValueError, match='prob_box'):
        _sampler(prob_box=1.5)
    with pytest.raises(ValueError, match=r'\(B, H, W\)'):
        sampler.first_prompts(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='differ'):
        sampler.correction_clicks(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))


def test_uniform_points_draw_every_pixel_of_the_mask_equally_often():
    from mmsam3.models.task_modules import InteractivePromptSampler

    mask = torch.zeros(1, 6, 7, dtype=torch.bool)
    cells = [(0, 0), (1, 5), (3, 2), (5, 6)]           # (y, x)
    for y, x in cells:
        mask[0, y, x] = True
    g = torch.Generator().manual_seed(0)
    pts = InteractivePromptSampler.uniform_points(mask.expand(4000, -1, -1), g)
    counts = {c: 0 for c in cells}
    for x, y in pts.long().tolist():
        counts[(y, x)] += 1                              # KeyError: a pixel outside the mask
    # 1000 expected each; 5 standard deviations of a binomial(4000, 1/4) is about 137
    assert all(abs(n - 1000) < 137 for n in counts.values()), counts
    # an empty mask: a pixel anywhere in the image
    anywhere = InteractivePromptSampler.uniform_points(torch.zeros(500, 6, 7, dtype=torch.bool), g)
    assert anywhere[:, 0].min() >= 0 and anywhere[:, 0].max() <= 6
    assert len({tuple(p) for p in anywhere.long().tolist()}) > 30
