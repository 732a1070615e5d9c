"""Interactive segmentation parity with Meta's ``Sam3Image.predict_inst`` (same weights, same
image file): clicks, boxes, box + clicks, a mask prompt from the previous round, multimask on
and off. Low-res logits and IoU within 1e-4, final mask pixels differing <= 1e-3."""
import time

import numpy as np
import pytest
import torch

from parity_interactive import TOLERANCES, cases_for, run_parity

pytestmark = pytest.mark.requires_official


def _photo_jpeg(path, h, w, seed):
    """A smooth colour image with sensor-like noise, saved as a JPEG (a photograph stand-in)."""
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 37 + yy / 53), 127 + 90 * np.cos(xx / 23 - yy / 41),
                    127 + 80 * np.sin((xx + yy) / 61)], -1)
    img += np.random.default_rng(seed).normal(0, 6, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return str(path)


def _check(worst, rows):
    for key, tol in TOLERANCES.items():
        assert worst[key] <= tol, (key, worst, rows)


def test_cases_cover_the_acceptance_list():
    names = [n for n, _ in cases_for(600, 400)]
    for what in ('one positive click', 'positive + negative clicks', 'box', 'box + clicks',
                 'mask prompt from the previous round'):
        for tag in ('/multi', '/single'):
            assert any(n.startswith(what) and n.endswith(tag) for n in names), (what, tag)
    assert [kw['multimask_output'] for _, kw in cases_for(600, 400)].count(False) == 5


@pytest.mark.parametrize('shape,seed', [((512, 600), 0), ((400, 400), 1)],
                         ids=['512x600', '400x400'])
def test_tiny_predict_inst_parity(tmp_path, bpe_path, shape, seed):
    image = _photo_jpeg(tmp_path / 'photo.jpg', *shape, seed)
    worst, rows = run_parity(image, 'tiny', seed, bpe_path=bpe_path, verbose=True)
    _check(worst, rows)
    assert len(rows) == 10


def test_stability_fallback_equals_meta():
    """The single-mask choice (stability fallback) against Meta's MaskDecoder, both branches."""
    from sam3.sam.mask_decoder import MaskDecoder
    from sam3.sam.transformer import TwoWayTransformer as MetaTwoWay

    from mmsam3.models.dense_heads import SAMMaskDecoder

    meta = MaskDecoder(transformer_dim=64, transformer=MetaTwoWay(depth=2, embedding_dim=64,
                                                                  mlp_dim=128, num_heads=4),
                       dynamic_multimask_via_stability=True).eval()
    ours = SAMMaskDecoder(embed_dims=64, transformer=dict(num_heads=4, mlp_dims=128)).eval()
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(64, 4, 12, 12, generator=g) * 0.3
    masks[::2, 0] += 3.0  # every other single mask stable
    iou = torch.rand(64, 4, generator=g)
    ref_m, ref_i = meta._dynamic_multimask_via_stability(masks, iou)
    got_m, got_i = ours.select(masks, iou, multimask_output=False)
    assert torch.equal(ref_m, got_m) and torch.equal(ref_i, got_i)
    stable = ours.stability_scores(masks[:, 0:1]) >= 0.98
    assert 0 < int(stable.sum()) < 64  # both branches taken


@pytest.mark.parametrize('points', [1, 2, 5])
def test_two_way_transformer_at_sam3_width_equals_meta(points):
    """SAM 3's decoder width (256, 8 heads), where a few clicks take the folded
    cross-attentions (SAMAttention.fold_projections), against Meta's TwoWayTransformer."""
    from sam3.sam.transformer import TwoWayTransformer as MetaTwoWay

    from mmsam3.models.layers import TwoWayTransformer

    torch.manual_seed(0)
    meta = MetaTwoWay(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048).eval()
    ours = TwoWayTransformer(depth=2, embed_dims=256, num_heads=8, mlp_dims=2048).eval()
    ours.load_state_dict(meta.state_dict())
    image, pe = torch.randn(1, 256, 36, 36), torch.randn(1, 256, 36, 36)
    tokens = torch.randn(1, 6 + points + 1, 256)  # output tokens, clicks, padding point
    folds = [m._fold(tokens.shape[1], 36 * 36) for m in ours.modules()
             if hasattr(m, '_fold') and m.internal_dims == 128]
    assert ('keys' in folds) == (points < 9)
    with torch.no_grad():
        ref, got = meta(image, pe, tokens), ours(image, pe, tokens)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_full_size_predict_inst_parity(tmp_path, bpe_path):
    image = _photo_jpeg(tmp_path / 'photo.jpg', 512, 600, 0)
    start = time.perf_counter()
    worst, rows = run_parity(image, 'full', 0, bpe_path=bpe_path, verbose=True)
    print(f'full-size interactive parity: {time.perf_counter() - start:.0f} s')
    _check(worst, rows)
