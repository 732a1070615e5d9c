"""SAM3MultiheadAttention against torch's nn.MultiheadAttention (same state dict): cross- and
self-attention, padding / additive / boolean masks, batch-first, the causal mask."""
import pytest
import torch
from torch import nn

from mmsam3.models.layers import SAM3MultiheadAttention

C, HEADS, B, LQ, LK = 16, 4, 2, 5, 7


def _pair(batch_first=False):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(C, HEADS, batch_first=batch_first).eval()
    for p in ref.parameters():
        nn.init.normal_(p, std=0.3)
    ours = SAM3MultiheadAttention(C, HEADS, batch_first=batch_first).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _ref(ref, q, k, v, **kw):
    return ref(q, k, v, need_weights=False, **kw)[0]


@pytest.mark.parametrize('batch_first', [False, True])
def test_cross_attention_with_masks(batch_first):
    ref, ours = _pair(batch_first)
    g = torch.Generator().manual_seed(1)
    shape_q, shape_k = ((B, LQ, C), (B, LK, C)) if batch_first else ((LQ, B, C), (LK, B, C))
    q, k, v = torch.randn(*shape_q, generator=g), torch.randn(*shape_k, generator=g), \
        torch.randn(*shape_k, generator=g)
    pad = torch.zeros(B, LK, dtype=torch.bool)
    pad[1, 4:] = True
    bias = torch.randn(B * HEADS, LQ, LK, generator=g)
    blocked = torch.zeros(LQ, LK, dtype=torch.bool)
    blocked[:, 0] = True
    with torch.no_grad():
        for kw in (dict(), dict(key_padding_mask=pad), dict(attn_mask=bias),
                   dict(attn_mask=blocked, key_padding_mask=pad)):
            out = ours(q, k, v, **kw)
            assert out.shape == q.shape
            torch.testing.assert_close(out, _ref(ref, q, k, v, **kw), rtol=0, atol=1e-5)


def test_self_attention_one_tensor_and_causal():
    ref, ours = _pair(batch_first=True)
    causal = SAM3MultiheadAttention(C, HEADS, batch_first=True, causal=True).eval()
    causal.load_state_dict(ours.state_dict())
    x = torch.randn(B, LK, C, generator=torch.Generator().manual_seed(2))
    future = torch.ones(LK, LK, dtype=torch.bool).triu(1)  # True = may not attend
    pad = torch.zeros(B, LK, dtype=torch.bool)
    pad[0, 5:] = True
    with torch.no_grad():
        # q, k, v one tensor: the fused projection path.
        torch.testing.assert_close(ours(x, x, x), _ref(ref, x, x, x), rtol=0, atol=1e-5)
        torch.testing.assert_close(causal(x, x, x), _ref(ref, x, x, x, attn_mask=future),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(causal(x, x, x, key_padding_mask=pad),
                                   _ref(ref, x, x, x, attn_mask=future, key_padding_mask=pad),
                                   rtol=0, atol=1e-5)
        # A prefix sees exactly its own context.
        torch.testing.assert_close(causal(x[:, :3], x[:, :3], x[:, :3]), causal(x, x, x)[:, :3],
                                   rtol=0, atol=1e-6)


def test_bad_width():
    with pytest.raises(ValueError, match='divisible'):
        SAM3MultiheadAttention(10, 4)
