"""SAM3FPN: official parity (Sam3DualViTDetNeck), dropped level handling, keys."""
import pytest
import torch
from torch import nn

from mmsam3.models.necks import SAM3FPN

C_IN, D = 64, 32


class _IdentityTrunk(nn.Module):
    channel_list = [C_IN]

    def forward(self, x):
        return [x]


def _official_neck():
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    return Sam3DualViTDetNeck(trunk=_IdentityTrunk(),
                              position_encoding=PositionEmbeddingSine(num_pos_feats=D,
                                                                      normalize=True),
                              d_model=D,
                              scale_factors=[4.0, 2.0, 1.0, 0.5])


@pytest.mark.requires_official
@pytest.mark.parametrize('compute_dropped', [False, True])
def test_matches_official(compute_dropped):
    torch.manual_seed(0)
    ref = _official_neck().eval()
    ours = SAM3FPN(C_IN, D, compute_dropped_levels=compute_dropped).eval()
    ref_sd = {k: v for k, v in ref.state_dict().items() if k.startswith('convs.')}
    assert set(ref_sd) == set(ours.state_dict())
    ours.load_state_dict(ref_sd, strict=True)
    x = torch.randn(2, C_IN, 6, 6)
    with torch.no_grad():
        ref_out, _, _, _ = ref(x)
        outs = ours((x, ))
    assert len(outs) == 3
    assert [o.shape[-1] for o in outs] == [24, 12, 6]
    for o, r in zip(outs, ref_out[:3]):  # official scalp=1 keeps the first three
        assert o.shape == r.shape == (2, D, o.shape[-2], o.shape[-1])
        diff = (o - r).abs().max().item()
        assert diff <= 1e-5, diff


@pytest.mark.requires_official
def test_all_levels_match_official():
    torch.manual_seed(0)
    ref = _official_neck().eval()
    ours = SAM3FPN(C_IN, D, num_dropped_levels=0).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k.startswith('convs.')})
    x = torch.randn(1, C_IN, 6, 6)
    with torch.no_grad():
        ref_out, _, _, _ = ref(x)
        outs = ours((torch.zeros(1), x))  # only the last input is used
    assert len(outs) == 4 and outs[3].shape == (1, D, 3, 3)
    for o, r in zip(outs, ref_out):
        assert (o - r).abs().max() <= 1e-5


def test_dropped_level_not_computed_and_frozen():
    neck = SAM3FPN(C_IN, D)
    assert not any(p.requires_grad for p in neck.convs[3].parameters())
    calls = []
    neck.convs[3].register_forward_hook(lambda *args: calls.append(1))
    outs = neck(torch.randn(1, C_IN, 4, 4))
    assert len(outs) == 3 and not calls
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in neck.convs[:3].parameters())
    assert 'convs.3.conv_1x1.weight' in neck.state_dict()
    neck = SAM3FPN(C_IN, D, compute_dropped_levels=True)
    neck.convs[3].register_forward_hook(lambda *args: calls.append(1))
    assert len(neck(torch.randn(1, C_IN, 4, 4))) == 3 and calls


def test_bad_arguments():
    with pytest.raises(ValueError):
        SAM3FPN(C_IN, D, scale_factors=(3.0, ))
    with pytest.raises(ValueError):
        SAM3FPN(C_IN, D, scale_factors=(1.0, ), num_dropped_levels=1)


def test_out_norm_off_by_default_and_keys():
    """Meta's necks have no norm: the default keeps the official keys; ``out_norm`` adds one
    LayerNorm per level (``convs.{i}.norm``) and nothing else."""
    plain = SAM3FPN(C_IN, D)
    normed = SAM3FPN(C_IN, D, out_norm=True)
    assert not any('norm' in k for k in plain.state_dict())
    extra = set(normed.state_dict()) - set(plain.state_dict())
    assert extra == {f'convs.{i}.norm.{p}' for i in range(4) for p in ('weight', 'bias')}
    # The dropped level stays frozen with its norm.
    assert not any(p.requires_grad for p in normed.convs[3].parameters())


def test_out_norm_normalises_every_token_whatever_the_scale():
    """With ``out_norm`` each output token has zero mean and unit variance over the channels
    (at the initial affine), so the embedding's scale no longer follows the convs' weights:
    the decoder's fixed position encoding keeps its share of the keys."""
    torch.manual_seed(0)
    plain = SAM3FPN(C_IN, D)
    normed = SAM3FPN(C_IN, D, out_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, C_IN, 4, 4)
    with torch.no_grad():
        for level in (plain, normed):
            for m in level.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    m.weight.mul_(50.0)  # a neck whose weights grew, as in training from scratch
        outs_plain = plain(x)
        outs = normed(x)
    for o, p in zip(outs, outs_plain):
        assert p.norm(dim=1).mean() > 100  # the plain neck's tokens grew with the weights
        mean, var = o.mean(1), o.var(1, unbiased=False)
        assert mean.abs().max() < 1e-4
        assert (var - 1).abs().max() < 1e-2
        # the same features, up to the per-token normalisation
        ref = (p - p.mean(1, keepdim=True)) / (p.var(1, unbiased=False, keepdim=True) + 1e-6).sqrt()
        torch.testing.assert_close(o, ref, atol=1e-4, rtol=1e-4)
    outs = normed(x)
    sum(o.sum() for o in outs).backward()
    assert all(normed.convs[i].norm.weight.grad is not None for i in range(3))
