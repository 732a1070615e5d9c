"""SAM3FusionEncoder: parity with the official ``TransformerEncoderFusion`` (eval, and training
with dropout 0) plus a forward/backward smoke test."""
import pytest
import torch

from mmsam3.models.layers import SAM3FusionEncoder
from tests.utils import randomize_parameters as _randomize

D, HEADS, FFN, LAYERS = 32, 4, 64, 2
H, W = 6, 8




def _build_official(dropout):
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from sam3.model.model_misc import MultiheadAttentionWrapper
    layer = TransformerEncoderLayer(activation='relu',
                                    d_model=D,
                                    dim_feedforward=FFN,
                                    dropout=dropout,
                                    pos_enc_at_attn=True,
                                    pos_enc_at_cross_attn_keys=False,
                                    pos_enc_at_cross_attn_queries=False,
                                    pre_norm=True,
                                    self_attention=MultiheadAttentionWrapper(num_heads=HEADS,
                                                                             dropout=dropout,
                                                                             embed_dim=D,
                                                                             batch_first=True),
                                    cross_attention=MultiheadAttentionWrapper(num_heads=HEADS,
                                                                              dropout=dropout,
                                                                              embed_dim=D,
                                                                              batch_first=True))
    return TransformerEncoderFusion(layer=layer,
                                    num_layers=LAYERS,
                                    d_model=D,
                                    num_feature_levels=1,
                                    frozen=False,
                                    use_act_checkpoint=True,
                                    add_pooled_text_to_img_feat=False,
                                    pool_text_with_mask=True)


def _inputs(bs=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(H * W, bs, D, generator=g)
    pos = torch.randn(H * W, bs, D, generator=g)
    prompt = torch.randn(6, bs, D, generator=g)
    mask = torch.zeros(bs, 6, dtype=torch.bool)
    mask[0, 2:4] = True
    mask[-1, 5] = True
    return feats, pos, prompt, mask


def _run_official(enc, feats, pos, prompt, mask):
    out = enc(src=[feats.clone()],
              src_key_padding_mask=None,
              src_pos=[pos.clone()],
              prompt=prompt,
              prompt_pos=torch.zeros_like(prompt),
              prompt_key_padding_mask=mask,
              feat_sizes=[(H, W)])
    return out['memory'], out['pos_embed']


@pytest.mark.requires_official
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_fusion_encoder_parity(mode):
    dropout = 0.1 if mode == 'eval' else 0.0
    official = _build_official(dropout)
    _randomize(official)
    ours = SAM3FusionEncoder(num_layers=LAYERS,
                             embed_dims=D,
                             num_heads=HEADS,
                             dim_feedforward=FFN,
                             dropout=dropout,
                             with_cp=(mode == 'train'))
    ours.load_state_dict(official.state_dict(), strict=True)
    official.train(mode == 'train')
    ours.train(mode == 'train')
    feats, pos, prompt, mask = _inputs()
    with torch.set_grad_enabled(mode == 'train'):
        ref_mem, ref_pos = _run_official(official, feats, pos, prompt, mask)
        mem, out_pos = ours(feats, pos, prompt, mask)
    assert mem.shape == (H * W, 2, D) and out_pos.shape == (H * W, 2, D)
    assert (mem - ref_mem).abs().max() <= 1e-5
    assert (out_pos - ref_pos).abs().max() == 0


def test_fusion_encoder_forward_backward():
    torch.manual_seed(0)
    enc = SAM3FusionEncoder(num_layers=2, embed_dims=D, num_heads=HEADS, dim_feedforward=FFN)
    enc.init_weights()
    enc.train()
    feats, pos, prompt, mask = _inputs()
    feats.requires_grad_(True)
    prompt.requires_grad_(True)
    mem, _ = enc(feats, pos, prompt, mask)
    mem.pow(2).mean().backward()
    assert torch.isfinite(feats.grad).all() and torch.isfinite(prompt.grad).all()
    # Padded prompt tokens get no gradient.
    assert prompt.grad[2:4, 0].abs().max() == 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_first_self_attention_runs_once_per_image():
    """With ``img_ids`` the image-only first self-attention runs per image, then is gathered;
    a kept :meth:`first_self_attn` gives the same memory; one of another shape is refused."""
    torch.manual_seed(0)
    enc = SAM3FusionEncoder(num_layers=2, embed_dims=D, num_heads=HEADS, dim_feedforward=FFN)
    enc.init_weights()
    enc.eval()
    feats, pos, _, _ = _inputs(bs=2)
    _, _, prompt, mask = _inputs(bs=3, seed=2)
    ids = torch.tensor([1, 0, 1])
    calls = []
    enc.layers[0].self_attn.register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    with torch.no_grad():
        ref, ref_pos = enc(feats[:, ids], pos[:, ids], prompt, mask)
        calls.clear()
        got, got_pos = enc(feats, pos, prompt, mask, img_ids=ids)
        assert [c[0] for c in calls] == [2]  # two images, not three prompts
        kept = enc.first_self_attn(feats, pos)
        again, _ = enc(feats, pos, prompt, mask, img_ids=ids, first_self_attn=kept)
    assert got.shape == ref.shape == (H * W, 3, D)
    assert (got - ref).abs().max() <= 1e-5
    assert torch.equal(got_pos, ref_pos)
    assert torch.equal(again, got)
    with pytest.raises(ValueError, match='first_self_attn'):
        enc(feats, pos, prompt, mask, img_ids=ids, first_self_attn=kept[:, :-1])
