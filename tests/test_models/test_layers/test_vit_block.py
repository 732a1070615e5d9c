"""ViT block pieces: official parity (window + global), window partition, drop path and
activation checkpointing."""
import pytest
import torch

from mmcv.cnn.bricks import DropPath
from torch import nn

from mmsam3.models.layers import SAM3ViTBlock, window_partition, window_unpartition

DIM, HEADS, MLP_RATIO = 32, 2, 4.625


def _official_block(window_size, input_size):
    from sam3.model.vitdet import Block
    return Block(DIM,
                 HEADS,
                 mlp_ratio=MLP_RATIO,
                 qkv_bias=True,
                 window_size=window_size,
                 input_size=(input_size, input_size),
                 use_rope=True,
                 rope_pt_size=(4, 4),
                 rope_interp=True)


@pytest.mark.requires_official
@pytest.mark.parametrize('window_size,grid', [(4, 8), (4, 10), (0, 8), (0, 12)])
def test_block_matches_official(window_size, grid):
    torch.manual_seed(0)
    ref = _official_block(window_size, grid).eval()
    for p in ref.parameters():  # non-trivial LayerNorm/bias values
        torch.nn.init.normal_(p, std=0.2)
    ours = SAM3ViTBlock(DIM, HEADS, mlp_ratio=MLP_RATIO, window_size=window_size,
                        rope_pt_size=4).eval()
    ref_sd = {k: v for k, v in ref.state_dict().items() if not k.endswith('freqs_cis')}
    assert set(ref_sd) == set(ours.state_dict())
    ours.load_state_dict(ref_sd, strict=True)
    x = torch.randn(2, grid, grid, DIM)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5, diff


def test_window_partition_roundtrip_with_padding():
    x = torch.randn(2, 10, 7, 3)
    windows, padded = window_partition(x, 4)
    assert padded == (12, 8) and windows.shape == (2 * 3 * 2, 4, 4, 3)
    torch.testing.assert_close(window_unpartition(windows, 4, padded, (10, 7)), x)
    # Padding is zeros at the bottom/right.
    assert windows[5, 2:].abs().sum() == 0


def test_drop_path_is_mmcv():
    assert isinstance(SAM3ViTBlock(DIM, HEADS, rope_pt_size=4).drop_path, nn.Identity)
    block = SAM3ViTBlock(DIM, HEADS, rope_pt_size=4, drop_path=0.5).train()
    dp = block.drop_path
    assert isinstance(dp, DropPath) and dp.drop_prob == 0.5
    torch.manual_seed(0)
    x = torch.ones(1000, 3)
    y = dp(x)
    kept = (y[:, 0] != 0).float().mean()
    assert 0.4 < kept < 0.6
    assert torch.all((y == 0) | (y == 2.0))  # whole samples dropped, the rest scaled by 2
    assert torch.equal(block.eval().drop_path(x), x)


def test_act_checkpoint_same_gradients():
    torch.manual_seed(0)
    block = SAM3ViTBlock(DIM, HEADS, window_size=4, rope_pt_size=4).train()
    x = torch.randn(1, 8, 8, DIM, requires_grad=True)
    block(x).square().sum().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    gx = x.grad.clone()
    block.zero_grad()
    x.grad = None
    block.with_cp = True
    block(x).square().sum().backward()
    for g, p in zip(grads, block.parameters()):
        torch.testing.assert_close(p.grad, g)
    torch.testing.assert_close(x.grad, gx)
