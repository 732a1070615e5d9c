"""SAM3DistillLoss: zero where the student equals the teacher, finite and positive otherwise."""
import torch

from mmsam3.models.losses import SAM3DistillLoss


def _outputs(seed, b=2, q=6, h=12):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(1, b, q, 4, generator=g) * 0.4 + 0.2
    return dict(logits=torch.randn(1, b, q, 1, generator=g) * 3,
                boxes=boxes, presence=torch.randn(1, b, 1, generator=g),
                pred_masks=torch.randn(b, q, h, h, generator=g) * 4)


def _index_match(b=2, q=6):
    return (torch.arange(b).repeat_interleave(q), torch.arange(q).repeat(b),
            torch.arange(q).repeat(b))


def test_identical_student_has_zero_box_and_feature_terms():
    loss = SAM3DistillLoss()
    feats = [torch.randn(2, 8, s, s) for s in (16, 8, 4)]
    f = loss.feature_losses(feats, feats)
    assert f['loss_kd_feat_mse'] == 0 and f['loss_kd_feat_cos'].abs() < 1e-6
    out = _outputs(0)
    o = loss.output_losses(out, out, _index_match())
    assert o['loss_kd_bbox'].abs() < 1e-6 and o['loss_kd_giou'].abs() < 1e-5
    # soft-target BCE is minimal (its gradient vanishes) at the teacher's own logits
    logits = out['logits'].clone().requires_grad_(True)
    loss.output_losses(dict(out, logits=logits), out, _index_match())['loss_kd_logits'].backward()
    assert logits.grad.abs().max() < 1e-6


def test_different_student_gives_positive_finite_terms():
    loss = SAM3DistillLoss()
    s, t = _outputs(0), _outputs(1)
    t['pred_masks'] = torch.randn(2, 6, 24, 24)  # the teacher's masks at another resolution
    out = loss.output_losses(s, t, _index_match())
    assert all(torch.isfinite(v) and v > 0 for v in out.values())
    f = loss.feature_losses([torch.randn(2, 8, 8, 8)], [torch.randn(2, 8, 12, 12)])
    assert all(v > 0 for v in f.values())
