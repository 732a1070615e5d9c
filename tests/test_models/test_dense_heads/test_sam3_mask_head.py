"""SAM3MaskHead: parity with the official ``UniversalSegmentationHead`` + ``PixelDecoder``, with
batch-1 FPN levels (broadcast) and per-image levels gathered by ``img_ids``."""
import pytest
import torch

from mmsam3.models.dense_heads import SAM3MaskHead, SAM3PixelDecoder
from tests.utils import randomize_parameters as _randomize

D, HEADS, NQ = 32, 4, 5
H, W = 4, 6  # encoder map; FPN levels are 2x and 4x




@pytest.fixture(scope='module')
def pair(official_sam3_pkg):
    from sam3.model.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from sam3.model.model_misc import MultiheadAttentionWrapper
    official = UniversalSegmentationHead(hidden_dim=D,
                                         upsampling_stages=3,
                                         aux_masks=False,
                                         presence_head=False,
                                         dot_product_scorer=None,
                                         act_ckpt=True,
                                         cross_attend_prompt=MultiheadAttentionWrapper(
                                             num_heads=HEADS, dropout=0, embed_dim=D),
                                         pixel_decoder=PixelDecoder(num_upsampling_stages=3,
                                                                    interpolation_mode='nearest',
                                                                    hidden_dim=D))
    _randomize(official)
    ours = SAM3MaskHead(embed_dims=D, num_heads=HEADS, num_upsampling_stages=3)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official.eval(), ours.eval()


def _inputs(num_imgs, img_ids, seed=1):
    g = torch.Generator().manual_seed(seed)
    bs = len(img_ids)
    fpn = [
        torch.randn(num_imgs, D, 4 * H, 4 * W, generator=g),
        torch.randn(num_imgs, D, 2 * H, 2 * W, generator=g),
        torch.randn(num_imgs, D, H, W, generator=g),  # the encoder level (replaced)
    ]
    memory = torch.randn(H * W, bs, D, generator=g)
    hs = torch.randn(2, bs, NQ, D, generator=g)
    prompt = torch.randn(5, bs, D, generator=g)
    mask = torch.zeros(bs, 5, dtype=torch.bool)
    mask[0, 1:3] = True
    return fpn, memory, hs, prompt, mask, torch.tensor(img_ids)


@pytest.mark.parametrize('num_imgs,img_ids', [(1, [0, 0]), (2, [0, 1, 1]), (1, [0])],
                         ids=['broadcast', 'gather', 'single'])
def test_mask_head_parity(pair, num_imgs, img_ids):
    official, ours = pair
    fpn, memory, hs, prompt, mask, ids = _inputs(num_imgs, img_ids)
    with torch.no_grad():
        ref = official(backbone_feats=fpn,
                       obj_queries=hs,
                       image_ids=ids,
                       encoder_hidden_states=memory,
                       prompt=prompt,
                       prompt_mask=mask)
        out = ours(fpn[:-1], memory, (H, W), hs[-1], prompt, mask, img_ids=ids)
    bs = len(img_ids)
    assert out['pred_masks'].shape == (bs, NQ, 4 * H, 4 * W)
    assert out['semantic_seg'].shape == (bs, 1, 4 * H, 4 * W)
    assert (out['pred_masks'] - ref['pred_masks']).abs().max() <= 1e-5
    assert (out['semantic_seg'] - ref['semantic_seg']).abs().max() <= 1e-5


def test_mask_head_backward():
    torch.manual_seed(0)
    head = SAM3MaskHead(embed_dims=D, num_heads=HEADS, with_cp=True).train()
    fpn, memory, hs, prompt, mask, ids = _inputs(2, [1, 0, 1])
    memory.requires_grad_(True)
    out = head(fpn[:-1], memory, (H, W), hs[-1], prompt, mask, img_ids=ids)
    (out['pred_masks'].mean() + out['semantic_seg'].mean()).backward()
    assert torch.isfinite(memory.grad).all()
    # Only two FPN levels precede the encoder map: the third stage is never used.
    assert head.pixel_decoder.conv_layers[2].weight.grad is None
    assert head.pixel_decoder.conv_layers[1].weight.grad.abs().max() > 0


@pytest.mark.parametrize('fine', [(4 * H, 4 * W), (4 * H + 3, 4 * W - 1)], ids=['x2', 'other'])
def test_pixel_decoder_lateral_terms_equal_direct(fine):
    """``conv(feat + up(out)) = conv(feat) + conv'(up(out))``: the lateral path (2x2 phase
    convolutions for a nearest x2 step, the plain convolution otherwise) equals the direct one,
    with the per-image lateral terms broadcast over the prompts."""
    torch.manual_seed(0)
    dec = SAM3PixelDecoder(D, num_upsampling_stages=3, num_feature_levels=3)
    _randomize(dec)
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(1, D, *fine, generator=g), torch.randn(1, D, 2 * H, 2 * W, generator=g),
             torch.randn(3, D, H, W, generator=g)]
    with torch.no_grad():
        ref = dec(feats)
        laterals = dec.lateral_terms(feats[:-1])
        got = dec(feats[-1:], laterals)
    assert [t.shape[0] for t in laterals] == [1, 1]
    assert got.shape == ref.shape == (3, D, *fine)
    assert (got - ref).abs().max() <= 1e-5


def test_mask_head_shares_image_terms_only_when_it_pays():
    """Two or more prompts per image at inference: lateral terms once per image, same outputs;
    one prompt per image, or gradients on: the direct path."""
    torch.manual_seed(0)
    head = SAM3MaskHead(embed_dims=D, num_heads=HEADS).eval()
    _randomize(head)
    calls = []
    original = head.pixel_decoder.lateral_terms
    head.pixel_decoder.lateral_terms = lambda feats: calls.append(len(feats)) or original(feats)
    fpn, memory, hs, prompt, mask, ids = _inputs(2, [0, 1, 1, 0])
    with torch.no_grad():
        shared = head(fpn[:-1], memory, (H, W), hs[-1], prompt, mask, img_ids=ids)
    assert calls == [2]
    direct = head(fpn[:-1], memory, (H, W), hs[-1], prompt, mask, img_ids=ids)
    assert calls == [2]  # gradients enabled: direct path
    for key in ('pred_masks', 'semantic_seg'):
        assert (shared[key] - direct[key].detach()).abs().max() <= 1e-5
    fpn, memory, hs, prompt, mask, ids = _inputs(2, [0, 1])
    with torch.no_grad():
        head(fpn[:-1], memory, (H, W), hs[-1], prompt, mask, img_ids=ids)
    assert calls == [2]  # one prompt per image: nothing to share
