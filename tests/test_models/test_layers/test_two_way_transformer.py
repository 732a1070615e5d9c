"""SAMAttention's folded projections (few tokens against many image tokens) against the plain
path, and when each path runs."""
import pytest
import torch

from mmsam3.models.layers import SAMAttention, TwoWayTransformer


def _pair(seed=0, dims=256, heads=8):
    torch.manual_seed(seed)
    attn = SAMAttention(dims, heads, downsample_rate=2)
    for p in attn.parameters():  # non-zero biases: the key bias must drop out exactly
        torch.nn.init.normal_(p, std=0.05)
    return attn


@pytest.mark.parametrize('direction', ['few queries', 'few keys'])
def test_folded_path_equals_plain_path_with_gradients(direction):
    attn = _pair()
    few = torch.randn(2, 7, 256, dtype=torch.float64, requires_grad=True)
    many = torch.randn(2, 300, 256, dtype=torch.float64, requires_grad=True)
    values = torch.randn_like(few if direction == 'few keys' else many, requires_grad=True)
    args = (few, many, values) if direction == 'few queries' else (many, few, values)
    attn = attn.double()
    expected = 'keys' if direction == 'few queries' else 'queries'
    assert attn._fold(args[0].shape[1], args[1].shape[1]) == expected

    outs, grads = [], []
    for fold in (False, True):
        attn.fold_projections = fold
        out = attn(*args)
        weights = torch.randn_like(out, generator=torch.Generator().manual_seed(1))
        # The key bias shifts a query's scores equally, so its gradient is zero on both
        # paths; the folded path leaves it out of the graph (None).
        g = torch.autograd.grad((out * weights).sum(), [*args, *attn.parameters()],
                                allow_unused=True)
        params = [*args, *attn.parameters()]
        outs.append(out.detach())
        grads.append([torch.zeros_like(p) if x is None else x for x, p in zip(g, params)])
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)
    for g_fold, g_plain in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fold, g_plain, rtol=0, atol=1e-11)


def test_plain_path_where_folding_does_not_pay_or_cannot_be_used():
    attn = _pair()
    # 8 heads x 16 tokens = 128 columns: no cheaper than the 128-wide projections.
    assert attn._fold(16, 5184) == ''
    assert attn._fold(5184, 16) == ''
    assert attn._fold(7, 100) == ''  # the many side is not larger than the inner width
    attn.fold_projections = False
    assert attn._fold(7, 5184) == ''
    drop = SAMAttention(256, 8, downsample_rate=2, dropout=0.1).train()
    assert drop._fold(7, 5184) == ''  # dropout on the weights changes their row sums
    assert drop.eval()._fold(7, 5184) == 'keys'


def test_tracing_records_the_plain_path():
    attn = _pair().eval()
    seen = []
    attn._few_queries = lambda *a: seen.append('fold') or SAMAttention._few_queries(attn, *a)
    few, many = torch.randn(1, 7, 256), torch.randn(1, 300, 256)
    torch.jit.trace(attn, (few, many, many), check_trace=False)
    assert seen == []
    attn(few, many, many)
    assert seen == ['fold']


def test_transformer_at_sam3_width_same_with_and_without_folding():
    torch.manual_seed(0)
    model = TwoWayTransformer(depth=2, embed_dims=256, num_heads=8, mlp_dims=2048).eval()
    image, pe = torch.randn(1, 256, 24, 24), torch.randn(1, 256, 24, 24)
    tokens = torch.randn(1, 8, 256)  # 6 output tokens, a click and the padding point
    with torch.no_grad():
        folded = model(image, pe, tokens)
        for m in model.modules():
            if isinstance(m, SAMAttention):
                m.fold_projections = False
        plain = model(image, pe, tokens)
    for a, b in zip(folded, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
