"""SAM3InteractiveHead / SAMMaskDecoder / SAMPromptEncoder on the tiny interactive config:
shapes, gradients, the stability fallback, and a concept-only model unchanged."""
import os.path as osp

import pytest
import torch

from mmsam3.testing import tiny_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TINY_INTERACTIVE = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny_interactive.py')


def build_interactive(seed=0):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsam3  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_INTERACTIVE)
    torch.manual_seed(seed)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def model():
    return build_interactive().eval()


def test_concept_weights_unchanged_by_the_interactive_parts():
    concept = tiny_model.build_tiny_sam3(seed=3).state_dict()
    inter = build_interactive(seed=3)
    assert inter.with_interactive and not tiny_model.build_tiny_sam3().with_interactive
    state = inter.state_dict()
    extra = {k for k in state if k not in concept}
    assert extra and all(k.startswith(('tracker_neck.', 'interactive_head.')) for k in extra)
    for k, v in concept.items():
        assert torch.equal(state[k], v), k


def test_one_vit_pass_serves_both_necks(model):
    calls = []
    handle = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        img, trk = model.extract_feats(torch.randn(2, 3, 168, 168))
    finally:
        handle.remove()
    assert len(calls) == 1
    assert [t.shape[-1] for t in img] == [48, 24, 12] == [t.shape[-1] for t in trk]
    assert not torch.equal(img[0], trk[0])


@pytest.mark.parametrize('multimask', [True, False])
def test_shapes_and_mask_prompt(model, multimask):
    trk = model.extract_tracker_feat(torch.randn(1, 3, 168, 168))
    pts = torch.tensor([[[40., 50.], [100., 120.], [60., 60.]]]).repeat(2, 1, 1)
    lbl = torch.tensor([[2, 3, 1], [1, 0, -1]])
    with torch.no_grad():
        out = model.forward_interactive(trk, pts, lbl, multimask_output=multimask)
        m = 3 if multimask else 1
        assert out['low_res_logits'].shape == (2, m, 48, 48)
        assert out['iou_pred'].shape == (2, m)
        assert out['object_score_logits'].shape == (2, 1)
        assert out['all_low_res_logits'].shape == (2, 4, 48, 48)
        again = model.forward_interactive(trk, pts, lbl,
                                          mask_input=out['low_res_logits'][:, :1],
                                          multimask_output=multimask)
        assert not torch.allclose(again['low_res_logits'], out['low_res_logits'])
        masks = model.interactive_head.postprocess_masks(out['low_res_logits'], (100, 130))
        assert masks.shape == (2, m, 100, 130) and masks.dtype == torch.bool


def test_gradients_reach_every_head_parameter():
    model = build_interactive().train()
    trk = model.extract_tracker_feat(torch.randn(2, 3, 168, 168))
    pts = torch.tensor([[[40., 50.], [100., 120.]], [[10., 20.], [30., 30.]]])
    lbl = torch.tensor([[2, 3], [1, 0]])
    out = model.forward_interactive(trk, pts, lbl, mask_input=torch.randn(2, 1, 48, 48))
    loss = (out['all_low_res_logits'].mean() + out['all_iou_pred'].sum() +
            out['object_score_logits'].sum())
    loss.backward()
    missing = [n for n, p in model.interactive_head.named_parameters() if p.grad is None]
    assert missing == ['prompt_encoder.no_mask_embed.weight']  # a mask prompt was given
    assert all(p.grad is not None for p in model.tracker_neck.convs[:3].parameters())


def test_errors(model):
    trk = model.extract_tracker_feat(torch.randn(1, 3, 168, 168))
    pts = torch.zeros(1, 1, 2)
    with pytest.raises(ValueError, match='mask_input must be'):
        model.forward_interactive(trk, pts, torch.ones(1, 1, dtype=torch.long),
                                  mask_input=torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match='point_labels'):
        model.forward_interactive(trk, pts, None)
    concept = tiny_model.build_tiny_sam3()
    with pytest.raises(RuntimeError, match='no interactive head'):
        concept.forward_interactive(trk, pts, torch.ones(1, 1, dtype=torch.long))
    from mmdet.registry import MODELS
    cfg = tiny_model.tiny_model_cfg(tracker_neck=dict())
    with pytest.raises(ValueError, match='go together'):
        MODELS.build(cfg)


def test_stability_fallback_picks_best_multimask():
    from mmsam3.models.dense_heads import SAMMaskDecoder
    dec = SAMMaskDecoder(embed_dims=64, transformer=dict(num_heads=4, mlp_dims=128)).eval()
    masks = torch.zeros(2, 4, 8, 8)
    masks[0, 0] = 5.0                       # stable single mask
    masks[1, 0] = 0.01                      # unstable: > -delta everywhere, > delta nowhere
    masks[1, 2] = 7.0
    iou = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.5, 0.1, 0.8, 0.3]])
    out, out_iou = dec.select(masks, iou, multimask_output=False)
    assert torch.equal(out[0, 0], masks[0, 0]) and torch.equal(out[1, 0], masks[1, 2])
    assert out_iou.tolist() == [[pytest.approx(0.1)], [pytest.approx(0.8)]]
    dec.train()
    out, _ = dec.select(masks, iou, multimask_output=False)
    assert torch.equal(out, masks[:, :1])


def test_hole_filling_matches_scipy_8_connectivity():
    from scipy import ndimage

    from mmsam3.models.dense_heads import fill_small_holes
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 40, 40, generator=g) + 0.8
    filled = fill_small_holes(logits, max_area=6)
    for i in range(3):
        bg = (logits[i, 0] <= 0).numpy()
        lab, num = ndimage.label(bg, structure=ndimage.generate_binary_structure(2, 2))
        sizes = ndimage.sum(bg, lab, range(num + 1))
        hole = (lab > 0) & (sizes[lab] <= 6)
        expect = torch.where(torch.from_numpy(hole), torch.tensor(10.0), logits[i, 0])
        assert torch.equal(filled[i, 0], expect)


def test_dense_position_encoding_reused_until_the_frequencies_change():
    from mmsam3.models.layers import SAMPromptEncoder

    enc = SAMPromptEncoder(embed_dims=64, image_embedding_size=(12, 12),
                           input_image_size=(168, 168))
    first = enc.get_dense_pe()
    assert first.shape == (1, 64, 12, 12)
    torch.testing.assert_close(first, enc.pe_layer((12, 12))[None], rtol=0, atol=0)
    assert enc.get_dense_pe() is first  # one computation per model, not per click
    state = enc.state_dict()
    state['pe_layer.positional_encoding_gaussian_matrix'] = torch.randn(2, 32)
    enc.load_state_dict(state)  # a checkpoint with other frequencies
    after = enc.get_dense_pe()
    assert not torch.equal(after, first)
    torch.testing.assert_close(after, enc.pe_layer((12, 12))[None], rtol=0, atol=0)
    with torch.no_grad():  # changed through .data (no version bump): still noticed
        enc.pe_layer.positional_encoding_gaussian_matrix.data.mul_(2)
    torch.testing.assert_close(enc.get_dense_pe(), enc.pe_layer((12, 12))[None], rtol=0, atol=0)


@pytest.mark.parametrize('with_mask', [False, True])
def test_blocked_upscaling_equals_the_convolutions(with_mask):
    """Eval-mode image_feats carry the skip features in block order; the decoder's blocked
    upscaling then gives the transposed-convolution path's outputs."""
    head = build_interactive(seed=1).interactive_head.eval()
    with torch.no_grad():
        for p in head.parameters():
            if p.dim() == 1:  # non-zero biases (the blocks carry the convolutions' biases)
                p.normal_(0, 0.1)
        g = torch.Generator().manual_seed(0)
        levels = [torch.randn(1, 64, 48, 48, generator=g), torch.randn(1, 64, 24, 24, generator=g),
                  torch.randn(1, 64, 12, 12, generator=g)]
        feats = head.image_feats(levels)
        assert 'feat_s0_blocks' in feats and 'feat_s1_blocks' in feats
        plain = {k: v for k, v in feats.items() if not k.endswith('_blocks')}
        pts = torch.tensor([[[30., 40.], [60., 70.]], [[10., 20.], [150., 160.]]])
        lbl = torch.tensor([[1, 0], [2, 3]], dtype=torch.int32)
        mask = torch.randn(2, 1, 48, 48, generator=g) if with_mask else None
        a = head(feats, pts, lbl, mask, True)
        b = head(plain, pts, lbl, mask, True)
    torch.testing.assert_close(a['all_low_res_logits'], b['all_low_res_logits'], rtol=0,
                               atol=1e-5)
    torch.testing.assert_close(a['all_iou_pred'], b['all_iou_pred'], rtol=0, atol=1e-6)
    assert 'feat_s0_blocks' not in head.train().image_feats(levels)  # training: convolutions

