"""SAM3GeometryEncoder: parity with the official ``SequenceGeometryEncoder`` for 0, 1 and several
boxes (negative labels, right padding, a prompt without boxes next to prompts with boxes)."""
import pytest
import torch

from mmsam3.models.layers import SAM3GeometryEncoder
from tests.utils import randomize_parameters as _randomize

D, HEADS, FFN, LAYERS = 32, 4, 64, 3
H, W = 6, 8




def _build_official(dropout=0.1):
    from sam3.model.encoder import TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.model_misc import MultiheadAttentionWrapper
    from sam3.model.position_encoding import PositionEmbeddingSine
    layer = TransformerEncoderLayer(activation='relu',
                                    d_model=D,
                                    dim_feedforward=FFN,
                                    dropout=dropout,
                                    pos_enc_at_attn=False,
                                    pre_norm=True,
                                    self_attention=MultiheadAttentionWrapper(num_heads=HEADS,
                                                                             dropout=dropout,
                                                                             embed_dim=D,
                                                                             batch_first=False),
                                    pos_enc_at_cross_attn_queries=False,
                                    pos_enc_at_cross_attn_keys=True,
                                    cross_attention=MultiheadAttentionWrapper(num_heads=HEADS,
                                                                              dropout=dropout,
                                                                              embed_dim=D,
                                                                              batch_first=False))
    return SequenceGeometryEncoder(pos_enc=PositionEmbeddingSine(D),
                                   encode_boxes_as_points=False,
                                   points_direct_project=True,
                                   points_pool=True,
                                   points_pos_enc=True,
                                   boxes_direct_project=True,
                                   boxes_pool=True,
                                   boxes_pos_enc=True,
                                   d_model=D,
                                   num_layers=LAYERS,
                                   layer=layer,
                                   use_act_ckpt=True,
                                   add_cls=True,
                                   add_post_encode_proj=True)


@pytest.fixture(scope='module')
def pair():
    official = _build_official()
    _randomize(official)
    ours = SAM3GeometryEncoder(embed_dims=D, num_layers=LAYERS, num_heads=HEADS,
                               dim_feedforward=FFN)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official.eval(), ours.eval()


def _boxes(valid_counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    bs, n = len(valid_counts), max(valid_counts) if valid_counts else 0
    cxcy = 0.2 + 0.6 * torch.rand(n, bs, 2, generator=g)
    wh = 0.1 + 0.3 * torch.rand(n, bs, 2, generator=g)
    boxes = torch.cat([cxcy, wh], -1)
    labels = torch.randint(0, 2, (n, bs), generator=g)
    mask = torch.arange(n)[None] >= torch.tensor(valid_counts)[:, None]
    return boxes, mask, labels


def _feats(bs, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(H * W, bs, D, generator=g), torch.randn(H * W, bs, D, generator=g)


def _run_both(official, ours, valid_counts, bs=None):
    from sam3.model.geometry_encoders import Prompt
    bs = bs or len(valid_counts)
    feats, pos = _feats(bs)
    if valid_counts:
        boxes, mask, labels = _boxes(valid_counts)
    else:
        boxes, mask, labels = torch.zeros(0, bs, 4), torch.zeros(bs, 0, dtype=torch.bool), \
            torch.zeros(0, bs, dtype=torch.long)
    with torch.no_grad():
        prompt = Prompt(box_embeddings=boxes, box_mask=mask, box_labels=labels)
        ref, ref_mask = official(prompt, [feats], [(H, W)], [pos])
        out, out_mask = ours(boxes, mask, labels, feats, pos, (H, W))
    return out, out_mask, ref, ref_mask, labels


@pytest.mark.requires_official
@pytest.mark.parametrize('valid_counts', [[], [1], [1, 1], [3, 1, 0, 2]],
                         ids=['no-boxes', 'one-box', 'one-box-b2', 'padded'])
def test_geometry_encoder_parity(pair, valid_counts):
    official, ours = pair
    bs = len(valid_counts) or 2
    out, out_mask, ref, ref_mask, labels = _run_both(official, ours, valid_counts, bs)
    n = max(valid_counts) if valid_counts else 0
    assert out.shape == (n + 1, bs, D) and out_mask.shape == (bs, n + 1)
    assert torch.equal(out_mask, ref_mask)
    assert (out - ref).abs().max() <= 1e-5
    if valid_counts:
        # CLS right after the last valid box; everything after it is padding.
        counts = torch.tensor(valid_counts)
        assert torch.equal((~out_mask).sum(-1), counts + 1)
    if valid_counts == [3, 1, 0, 2]:
        assert (labels == 0).any() and (labels == 1).any()


@pytest.mark.requires_official
def test_geometry_encoder_no_boxes_argument(pair):
    _, ours = pair
    feats, pos = _feats(3)
    with torch.no_grad():
        out, mask = ours(None, None, None, feats, pos, (H, W))
    assert out.shape == (1, 3, D) and not mask.any()
    # Without boxes every prompt's sequence is the same CLS token attending to its own image.
    assert torch.isfinite(out).all()


def test_geometry_encoder_backward():
    torch.manual_seed(0)
    enc = SAM3GeometryEncoder(embed_dims=D,
                              num_layers=2,
                              num_heads=HEADS,
                              dim_feedforward=FFN,
                              with_cp=True).train()
    feats, pos = _feats(2)
    feats.requires_grad_(True)
    boxes, mask, labels = _boxes([2, 1])
    out, _ = enc(boxes, mask, labels, feats, pos, (H, W))
    out.sum().backward()
    assert torch.isfinite(feats.grad).all()
    # the RoI-pooled box features and the image pre-norm both feed the output
    assert enc.boxes_pool_project.weight.grad.abs().sum() > 0
    assert enc.img_pre_norm.weight.grad.abs().sum() > 0
