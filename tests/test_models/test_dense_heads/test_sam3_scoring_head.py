"""SAM3ScoringHead: parity with the official ``DotProductScoring`` (+ its prompt ``MLP``)."""
import torch
from torch import nn

from mmsam3.models.dense_heads import SAM3ScoringHead
from mmsam3.models.layers import SAM3MLP
from tests.utils import randomize_parameters as _randomize

D, HIDDEN = 32, 64




def _official(sam3):
    from sam3.model.model_misc import MLP, DotProductScoring
    prompt_mlp = MLP(input_dim=D,
                     hidden_dim=HIDDEN,
                     output_dim=D,
                     num_layers=2,
                     dropout=0.1,
                     residual=True,
                     out_norm=nn.LayerNorm(D))
    return DotProductScoring(d_model=D, d_proj=D, prompt_mlp=prompt_mlp)


def test_scoring_head_parity(official_sam3_pkg):
    official = _official(official_sam3_pkg)
    _randomize(official)
    ours = SAM3ScoringHead(embed_dims=D, d_proj=D, mlp_hidden_dim=HIDDEN)
    ours.load_state_dict(official.state_dict(), strict=True)
    official.eval()
    ours.eval()
    g = torch.Generator().manual_seed(1)
    hs = torch.randn(3, 2, 5, D, generator=g)
    prompt = torch.randn(6, 2, D, generator=g)
    mask = torch.tensor([[False, False, True, True, False, True], [False] * 6])
    with torch.no_grad():
        ref = official(hs, prompt, mask)
        out = ours(hs, prompt, mask)
        assert out.shape == (3, 2, 5, 1)
        assert (out - ref).abs().max() <= 1e-5
        # The clamp is active.
        big = ours(hs * 1000, prompt, mask)
        assert big.abs().max() <= 12.0 and (big.abs() == 12.0).any()
        assert (big - official(hs * 1000, prompt, mask)).abs().max() <= 1e-4


def test_mlp_parity(official_sam3_pkg):
    from sam3.model.model_misc import MLP
    official = MLP(D, HIDDEN, 4, 3)
    _randomize(official)
    ours = SAM3MLP(D, HIDDEN, 4, 3)
    ours.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, 7, D)
    assert (ours(x) - official(x)).abs().max() <= 1e-6


def test_scoring_head_backward():
    head = SAM3ScoringHead(embed_dims=D, d_proj=D, mlp_hidden_dim=HIDDEN).train()
    hs = torch.randn(2, 2, 4, D, requires_grad=True)
    prompt = torch.randn(3, 2, D)
    head(hs, prompt, torch.zeros(2, 3, dtype=torch.bool)).sum().backward()
    assert torch.isfinite(hs.grad).all() and hs.grad.abs().max() > 0
