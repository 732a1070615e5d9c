"""SAM3TextEncoder: official parity (VETextEncoder), keys, init, checkpointing, errors."""
import pytest
import torch

from mmsam3.models.language_models import SAM3TextEncoder, SAM3Tokenizer

TINY = dict(embed_dims=16,
            width=32,
            heads=4,
            layers=2,
            context_length=32,
            vocab_size=49408,
            output_dim=24)
PROMPTS = ['a cat', 'red car on the road', 'person', 'x' * 3, 'dog & frisbee!!! ' * 4]


def _official(tokenizer):
    from sam3.model.text_encoder_ve import VETextEncoder
    return VETextEncoder(d_model=TINY['embed_dims'],
                         tokenizer=tokenizer,
                         width=TINY['width'],
                         heads=TINY['heads'],
                         layers=TINY['layers'],
                         context_length=32,
                         vocab_size=49408)


@pytest.mark.requires_official
def test_matches_official(bpe_path):
    from sam3.model.tokenizer_ve import SimpleTokenizer
    torch.manual_seed(0)
    ours = SAM3TextEncoder(**dict(TINY, output_dim=512)).eval()
    for name, p in ours.named_parameters():
        if 'ln_' in name or name.endswith('bias'):
            torch.nn.init.normal_(p, std=0.2)
    ref = _official(SimpleTokenizer(bpe_path=bpe_path)).eval()
    assert set(ref.state_dict()) == set(ours.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)

    ids = SAM3Tokenizer(bpe_path)(PROMPTS)
    with torch.no_grad():
        ref_mask, ref_feats, ref_embeds = ref(PROMPTS, device=torch.device('cpu'))
        feats, mask = ours(ids)
    assert feats.shape == (len(PROMPTS), 32, TINY['embed_dims'])
    assert mask.shape == (len(PROMPTS), 32) and mask.dtype == torch.bool
    assert torch.equal(mask, ref_mask)
    diff = (feats - ref_feats.transpose(0, 1)).abs().max().item()
    assert diff <= 1e-5, diff


def test_shorter_sequences_and_keys():
    enc = SAM3TextEncoder(**TINY).eval()
    sd = enc.state_dict()
    assert sd['encoder.text_projection'].shape == (32, 24)
    assert sd['encoder.positional_embedding'].shape == (32, 32)
    assert 'encoder.transformer.resblocks.1.attn.in_proj_weight' in sd
    assert 'encoder.transformer.resblocks.1.attn.out_proj.bias' in sd
    assert 'encoder.transformer.resblocks.0.mlp.c_fc.weight' in sd
    assert 'resizer.weight' in sd and 'encoder.ln_final.bias' in sd
    ids = torch.randint(1, 49408, (3, 32))
    ids[:, 10:] = 0
    with torch.no_grad():
        full, mask = enc(ids)
        short, _ = enc(ids[:, :12])
    # Causal: a prefix sees exactly the same context.
    torch.testing.assert_close(short, full[:, :12], rtol=0, atol=1e-6)
    assert mask[:, 10:].all() and not mask[:, :10].any()
    with pytest.raises(ValueError):
        enc(torch.zeros(2, 33, dtype=torch.long))
    with pytest.raises(ValueError):
        enc(torch.zeros(32, dtype=torch.long))


def test_from_scratch_is_finite_and_trains():
    torch.manual_seed(0)
    enc = SAM3TextEncoder(**TINY).train()
    for p in (enc.encoder.positional_embedding, enc.encoder.text_projection):
        assert torch.isfinite(p).all() and 0 < p.std() < 0.5
    ids = torch.randint(1, 49408, (2, 32))
    feats, _ = enc(ids)
    assert torch.isfinite(feats).all()
    feats.square().mean().backward()
    grads = {n: p.grad for n, p in enc.named_parameters()}
    assert grads['encoder.text_projection'] is None  # dead, kept for strict loading
    assert all(g is not None for n, g in grads.items() if n != 'encoder.text_projection')

    # Activation checkpointing: identical gradients.
    ref_grads = {n: g.clone() for n, g in grads.items() if g is not None}
    enc.zero_grad()
    enc.with_cp = True
    feats, _ = enc(ids)
    feats.square().mean().backward()
    for n, g in ref_grads.items():
        torch.testing.assert_close(dict(enc.named_parameters())[n].grad, g)


def test_registry_build():
    from mmdet.registry import MODELS
    enc = MODELS.build(dict(type='SAM3TextEncoder', **TINY))
    assert isinstance(enc, SAM3TextEncoder)


# Tracing turns shape arithmetic into constants (TracerWarning); the onnxruntime comparison
# below checks the exported graph at this shape.
@pytest.mark.filterwarnings('ignore:Converting a tensor to a Python:torch.jit.TracerWarning')
def test_bf16_autocast_and_onnx_export():
    import io
    enc = SAM3TextEncoder(**TINY).eval()
    ids = torch.randint(1, 49408, (2, 32))
    ids[:, 6:] = 0
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        feats, _ = enc(ids)
    assert torch.isfinite(feats.float()).all()

    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    buf = io.BytesIO()
    torch.onnx.export(enc, (ids, ),
                      buf,
                      dynamo=False,
                      opset_version=17,
                      input_names=['token_ids'],
                      output_names=['features', 'pad_mask'])
    sess = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    feats_ort, mask_ort = sess.run(None, {'token_ids': ids.numpy()})
    with torch.no_grad():
        feats, mask = enc(ids)
    assert (torch.from_numpy(feats_ort) - feats).abs().max() <= 1e-5
    assert torch.equal(torch.from_numpy(mask_ort), mask)
