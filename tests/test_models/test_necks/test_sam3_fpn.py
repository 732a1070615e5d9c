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
