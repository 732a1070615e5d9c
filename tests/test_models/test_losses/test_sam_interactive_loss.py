"""SAMInteractiveLoss on values checkable by hand."""
import math

import pytest
import torch
from mmdet.registry import MODELS

import mmsam3  # noqa: F401


def _loss(**kw):
    return MODELS.build(dict(type='SAMInteractiveLoss', **kw))


def test_focal_and_dice_on_zero_logits():
    gt = torch.tensor([[[1., 1.], [0., 0.]]])          # (1, 2, 2), half the pixels
    logits = torch.zeros(1, 1, 2, 2)                     # p = 0.5 everywhere
    out = _loss()(logits, torch.full((1, 1), 0.0), torch.full((1, 1), 0.0), gt)
    # focal per pixel: ln2 * 0.5^2 * (0.25 on the object, 0.75 off it); mean 0.125 ln2
    assert out['loss_mask'].item() == pytest.approx(20 * 0.125 * math.log(2), rel=1e-6)
    # dice: 1 - (2 * 0.5 * 2 + 1) / (2 + 2 + 1) = 0.4
    assert out['loss_dice'].item() == pytest.approx(0.4, rel=1e-6)
    # logits 0 -> predicted mask empty -> true IoU 0; iou_pred 0 -> L1 0
    assert out['loss_iou'].item() == pytest.approx(0.0)
    # object present, logit 0: BCE ln2
    assert out['loss_obj'].item() == pytest.approx(math.log(2), rel=1e-6)


def test_best_candidate_gets_the_mask_terms_and_iou_head_sees_all_valid():
    gt = torch.tensor([[[1., 1.], [0., 0.]]])
    good = torch.tensor([[10., 10.], [-10., -10.]])
    bad = -good
    logits = torch.stack([bad, good, bad])[None]         # (1, 3, 2, 2)
    iou_pred = torch.tensor([[0.5, 0.5, 0.5]])           # true IoUs: 0, 1, 0
    loss = _loss(iou_loss='mse')
    out = loss(logits, iou_pred, torch.full((1, 1), 5.0), gt)
    assert out['best_index'].tolist() == [1]
    assert out['loss_mask'].item() < 1e-3 and out['loss_dice'].item() < 1e-3
    assert out['loss_iou'].item() == pytest.approx(0.25, rel=1e-6)  # mean of 0.5^2 x 3
    # with only candidate 0 valid (the single-mask output), the bad mask is the "best"
    valid = torch.tensor([[True, False, False]])
    out0 = loss(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid)
    # dice of the inverted mask: 1 - (0 + 1) / (2 + 2 + 1) = 0.8
    assert out0['best_index'].tolist() == [0]
    assert out0['loss_dice'].item() == pytest.approx(0.8, abs=1e-4)
    assert out0['loss_iou'].item() == pytest.approx(0.25, rel=1e-6)


def test_iou_head_is_trained_on_every_candidate_unless_asked_otherwise():
    gt = torch.tensor([[[1., 1.], [0., 0.]]])
    good = torch.tensor([[10., 10.], [-10., -10.]])
    logits = torch.stack([-good, good, good])[None]      # true IoUs: 0, 1, 1
    iou_pred = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    valid = torch.tensor([[True, False, False]])        # a round that trains output 0 only
    out = _loss()(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid)
    assert out['loss_iou'].item() == pytest.approx(2 / 3, rel=1e-6)  # L1 mean of 0, 1, 1
    out['loss_iou'].backward()
    assert (iou_pred.grad[0, 1:] != 0).all()            # the untrained candidates too
    only = _loss(supervise_all_iou=False)(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid)
    assert only['loss_iou'].item() == pytest.approx(0.0)


def test_absent_object_only_trains_the_object_score_and_gradients_flow():
    gt = torch.zeros(2, 4, 4)
    gt[0, :2] = 1                                        # object 0 present, object 1 absent
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)  # resized to 4 x 4 inside
    iou_pred = torch.rand(2, 3, requires_grad=True)
    obj = torch.tensor([[0.0], [2.0]], requires_grad=True)
    out = _loss()(logits, iou_pred, obj, gt)
    expected_obj = (math.log(2) + math.log1p(math.exp(2.0))) / 2
    assert out['loss_obj'].item() == pytest.approx(expected_obj, rel=1e-6)
    sum(v for k, v in out.items() if k.startswith('loss')).backward()
    assert logits.grad[1].abs().sum() == 0 and iou_pred.grad[1].abs().sum() == 0
    assert logits.grad[0].abs().sum() > 0 and obj.grad[1].item() > 0


def test_bad_input_is_a_clear_error():
    loss = _loss()
    with pytest.raises(ValueError, match="'l1' or 'mse'"):
        _loss(iou_loss='huber')
    with pytest.raises(ValueError, match='gt_masks'):
        loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match='at least one'):
        loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3), torch.zeros(1, 1), torch.zeros(1, 4, 4),
             torch.zeros(1, 3, dtype=torch.bool))


def test_also_train_first_adds_the_single_mask_output_terms():
    gt = torch.tensor([[[1., 1.], [0., 0.]]])
    good = torch.tensor([[10., 10.], [-10., -10.]])
    logits = torch.stack([-good, good, -good, -good])[None]   # output 0 inverted, 1 exact
    iou_pred = torch.zeros(1, 4)
    valid = torch.tensor([[False, True, True, True]])       # a one-point round: multimask
    loss = _loss()
    base = loss(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid)
    both = loss(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid, torch.tensor([True]))
    assert base['best_index'].tolist() == both['best_index'].tolist() == [1]
    assert base['loss_dice'].item() < 1e-3
    # + dice of the inverted output 0: 1 - (0 + 1) / (2 + 2 + 1) = 0.8
    assert both['loss_dice'].item() == pytest.approx(0.8, abs=1e-3)
    assert both['loss_mask'].item() > base['loss_mask'].item()
    off = loss(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid, torch.tensor([False]))
    assert off['loss_dice'].item() == pytest.approx(base['loss_dice'].item())
    with pytest.raises(ValueError, match='also_train_first'):
        loss(logits, iou_pred, torch.full((1, 1), 5.0), gt, valid, torch.tensor([True, False]))


def test_low_res_targets_average_the_mask_down_to_the_logits():
    # A 4 x 4 mask whose top-left 2 x 2 block is 3/4 covered; the logits are 2 x 2.
    gt = torch.zeros(1, 4, 4)
    gt[0, 0, :2] = 1
    gt[0, 1, 0] = 1
    gt[0, 2:, 2:] = 1                                    # bottom-right block fully covered
    logits = torch.zeros(1, 1, 2, 2)                     # p = 0.5
    out = _loss(low_res_targets=True)(logits, torch.zeros(1, 1), torch.zeros(1, 1), gt)
    target = torch.tensor([0.75, 0.0, 0.0, 1.0])
    # soft-target focal per pixel: BCE(0.5; t) = ln2, (1 - p_t)^2 = 0.25, alpha weight
    # 0.25 t + 0.75 (1 - t)
    focal = (math.log(2) * 0.25 * (0.25 * target + 0.75 * (1 - target))).mean()
    assert out['loss_mask'].item() == pytest.approx(20 * focal.item(), rel=1e-6)
    dice = 1 - (2 * (0.5 * target).sum() + 1) / (0.5 * 4 + target.sum() + 1)
    assert out['loss_dice'].item() == pytest.approx(dice.item(), rel=1e-6)
    # the default upsamples the logits to the mask instead: a different (full-res) target
    full = _loss()(logits, torch.zeros(1, 1), torch.zeros(1, 1), gt)
    assert full['loss_dice'].item() != pytest.approx(out['loss_dice'].item())
    # an empty mask stays absent at low resolution (only the object term)
    empty = _loss(low_res_targets=True)(logits, torch.zeros(1, 1), torch.zeros(1, 1),
                                        torch.zeros(1, 4, 4))
    assert empty['loss_mask'].item() == 0 and empty['loss_dice'].item() == 0
