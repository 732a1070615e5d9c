"""SAM3LiteTextEncoder: shapes, padding, and equality with transformers' LiteText text model."""
import pytest
import torch

from mmsam3.models.language_models import SAM3LiteTextEncoder
from mmsam3.testing.random_weights import randomize_parameters

SIZES = dict(embed_dims=16, width=32, layers=3, heads=4, hidden_dims=64,
             max_position_embeddings=77, projection_dims=24, vocab_size=100, pad_token_id=99)


def _ids():
    ids = torch.zeros(2, 12, dtype=torch.long)
    ids[0, :5] = torch.tensor([98, 5, 6, 7, 99])
    ids[1, :3] = torch.tensor([98, 8, 99])
    return ids


def test_shapes_pad_mask_and_errors():
    enc = SAM3LiteTextEncoder(context_length=12, **SIZES).eval()
    feats, pad = enc(_ids())
    assert feats.shape == (2, 12, 16) and torch.equal(pad, _ids() == 0)
    assert not enc.encoder.projection.weight.requires_grad  # dead, frozen
    with pytest.raises(ValueError, match='context length'):
        enc(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match='layers >= 2'):
        SAM3LiteTextEncoder(layers=1)


def test_equals_transformers_text_model():
    transformers = pytest.importorskip('transformers')
    from transformers.models.sam3_lite_text.modeling_sam3_lite_text import (
        Sam3LiteTextTextConfig, Sam3LiteTextTextModel)

    cfg = Sam3LiteTextTextConfig(hidden_size=32, intermediate_size=64, projection_dim=24,
                                 num_hidden_layers=3, num_attention_heads=4,
                                 max_position_embeddings=77, vocab_size=100)
    ref = Sam3LiteTextTextModel(cfg)
    randomize_parameters(ref, 0)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ref.eval()
    ours = SAM3LiteTextEncoder(context_length=12, **SIZES).eval()
    missing, unexpected = ours.encoder.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and not missing
    ids = _ids()
    with torch.no_grad():
        hf_ids = ids.masked_fill(ids == 0, 99)
        expected = ref(input_ids=hf_ids, attention_mask=(ids != 0).long()).last_hidden_state
        got = ours.encoder(hf_ids, ids != 0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the padding id matters (the RepMixer convolutions see padding positions)
    other = SAM3LiteTextEncoder(context_length=12, **dict(SIZES, pad_token_id=0)).eval()
    other.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert not torch.allclose(other(ids)[0][~(ids == 0)], ours(ids)[0][~(ids == 0)])
