"""maybe_checkpoint: recomputes only with with_cp + training + grad mode, same gradients, kwargs."""
import pytest
import torch
from torch import nn

from mmsam3.models.layers import maybe_checkpoint


class _Owner(nn.Module):
    """A layer called through maybe_checkpoint; counts how often it runs."""

    def __init__(self, with_cp):
        super().__init__()
        self.with_cp = with_cp
        self.layer = nn.Linear(4, 4)
        self.calls = 0

    def _inner(self, x, scale=1.0):
        self.calls += 1
        return self.layer(x).tanh() * scale

    def forward(self, x, scale=1.0):
        return maybe_checkpoint(self, self._inner, x, scale=scale)


def _grads(owner, x):
    owner.zero_grad()
    x = x.clone().requires_grad_(True)
    owner(x, scale=3.0).square().sum().backward()
    return [p.grad.clone() for p in owner.parameters()] + [x.grad.clone()]


def test_recomputes_only_when_asked():
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    plain, cp = _Owner(False).train(), _Owner(True).train()
    cp.load_state_dict(plain.state_dict())

    ref = _grads(plain, x)
    assert plain.calls == 1
    got = _grads(cp, x)
    assert cp.calls == 2  # forward, then the recomputation in backward
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=0, atol=0)

    # Eval mode or no_grad: the function simply runs once.
    cp.calls = 0
    cp.eval()(x).sum()
    with torch.no_grad():
        cp.train()(x)
    assert cp.calls == 2


def test_owner_without_switch_is_an_error():
    with pytest.raises(AttributeError, match='with_cp'):
        maybe_checkpoint(nn.Linear(2, 2), torch.relu, torch.zeros(1))
