"""SAM3Decoder: parity with the official ``TransformerDecoder`` (eval and DAC training), and a
forward/backward smoke test."""
import pytest
import torch

from mmsam3.models.layers import SAM3Decoder
from tests.utils import random_linear_functional
from tests.utils import randomize_parameters as _randomize

D, HEADS, FFN, LAYERS, NQ = 32, 4, 64, 3, 5
H, W = 6, 8  # non-square on purpose: catches row/column mix-ups in the boxRPB




def _build_official(dropout, with_cp):
    from sam3.model.decoder import TransformerDecoder, TransformerDecoderLayer
    from sam3.model.model_misc import MultiheadAttentionWrapper
    layer = TransformerDecoderLayer(activation='relu',
                                    d_model=D,
                                    dim_feedforward=FFN,
                                    dropout=dropout,
                                    cross_attention=MultiheadAttentionWrapper(num_heads=HEADS,
                                                                              dropout=dropout,
                                                                              embed_dim=D),
                                    n_heads=HEADS,
                                    use_text_cross_attention=True)
    return TransformerDecoder(layer=layer,
                              num_layers=LAYERS,
                              num_queries=NQ,
                              return_intermediate=True,
                              box_refine=True,
                              num_o2m_queries=0,
                              dac=True,
                              boxRPB='log',
                              d_model=D,
                              frozen=False,
                              interaction_layer=None,
                              dac_use_selfatt_ln=True,
                              use_act_checkpoint=with_cp,
                              presence_token=True)


def _inputs(bs=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(H * W, bs, D, generator=g)
    pos = torch.randn(H * W, bs, D, generator=g)
    prompt = torch.randn(7, bs, D, generator=g)
    prompt_mask = torch.zeros(bs, 7, dtype=torch.bool)
    prompt_mask[0, 3:5] = True  # pads in the middle, as text pads + geometry tokens give
    prompt_mask[-1, 6:] = True
    return memory, pos, prompt, prompt_mask


def _run_official(dec, memory, pos, prompt, prompt_mask, apply_dac):
    bs = memory.shape[1]
    tgt = dec.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
    hs, refs, presence, presence_feats = dec(tgt=tgt,
                                             memory=memory,
                                             memory_key_padding_mask=None,
                                             pos=pos,
                                             reference_boxes=None,
                                             level_start_index=torch.tensor([0]),
                                             spatial_shapes=torch.tensor([[H, W]]),
                                             valid_ratios=torch.ones(bs, 1, 2),
                                             tgt_mask=None,
                                             memory_text=prompt,
                                             text_attention_mask=prompt_mask,
                                             apply_dac=apply_dac)
    from sam3.model.model_misc import inverse_sigmoid
    hs, refs = hs.transpose(1, 2), refs.transpose(1, 2)
    boxes = (inverse_sigmoid(refs) + dec.bbox_embed(hs)).sigmoid()
    return dict(hs=hs,
                references=refs,
                pred_boxes=boxes,
                presence_logits=presence.transpose(1, 2),
                presence_feats=presence_feats)


def _build_pair(dropout, with_cp):
    official = _build_official(dropout, with_cp)
    _randomize(official)
    ours = SAM3Decoder(num_layers=LAYERS,
                       embed_dims=D,
                       num_heads=HEADS,
                       dim_feedforward=FFN,
                       dropout=dropout,
                       num_queries=NQ,
                       with_cp=with_cp)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


def _max_diffs(out, ref):
    return {k: (out[k] - ref[k]).abs().max().item() for k in ref}


@pytest.mark.requires_official
def test_decoder_eval_parity():
    official, ours = _build_pair(dropout=0.1, with_cp=False)
    official.eval()
    ours.eval()
    memory, pos, prompt, prompt_mask = _inputs()
    with torch.no_grad():
        ref = _run_official(official, memory, pos, prompt, prompt_mask, apply_dac=False)
        out = ours(memory, pos, (H, W), prompt, prompt_mask)
    assert out['hs'].shape == (LAYERS, 2, NQ, D)
    assert out['references'].shape == (LAYERS, 2, NQ, 4)
    assert out['pred_boxes'].shape == (LAYERS, 2, NQ, 4)
    assert out['presence_logits'].shape == (LAYERS, 2, 1)
    assert out['presence_feats'].shape == (1, 2, D)
    diffs = _max_diffs(out, ref)
    assert max(diffs.values()) <= 1e-5, diffs
    # Boxes really moved (the randomised box head is not the zero-initialised one).
    assert (out['references'][1] - out['references'][0]).abs().max() > 1e-3


@pytest.mark.requires_official
def test_decoder_train_dac_parity_with_grads():
    # The official decoder asserts activation checkpointing in training; dropout 0 makes both
    # deterministic.
    official, ours = _build_pair(dropout=0.0, with_cp=True)
    official.train()
    ours.train()
    memory, pos, prompt, prompt_mask = _inputs()
    ref = _run_official(official, memory, pos, prompt, prompt_mask, apply_dac=True)
    out = ours(memory, pos, (H, W), prompt, prompt_mask)
    assert out['hs'].shape == (LAYERS, 2, 2 * NQ, D)
    diffs = _max_diffs(out, ref)
    assert max(diffs.values()) <= 1e-5, diffs
    # The one-to-many half skips self-attention, so it differs from the one-to-one half.
    assert (out['hs'][:, :, :NQ] - out['hs'][:, :, NQ:]).abs().max() > 1e-4

    loss_of = random_linear_functional(ref, seed=3)
    loss_of(ref).backward()
    loss_of(out).backward()
    official_grads = dict(official.named_parameters())
    grad_diff = max(
        (p.grad - official_grads[n].grad).abs().max().item() for n, p in ours.named_parameters())
    assert grad_diff <= 1e-4


@pytest.mark.parametrize('with_cp', [False, True])
def test_decoder_forward_backward(with_cp):
    torch.manual_seed(0)
    dec = SAM3Decoder(num_layers=2,
                      embed_dims=D,
                      num_heads=HEADS,
                      dim_feedforward=FFN,
                      num_queries=NQ,
                      with_cp=with_cp)
    dec.init_weights()
    dec.train()
    memory, pos, prompt, prompt_mask = _inputs()
    memory.requires_grad_(True)
    out = dec(memory, pos, (H, W), prompt, prompt_mask)
    assert out['hs'].shape == (2, 2, 2 * NQ, D)
    loss = out['pred_boxes'].sum() + out['presence_logits'].sum() + out['hs'].pow(2).mean()
    loss.backward()
    assert memory.grad is not None and torch.isfinite(memory.grad).all()
    for name, p in dec.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # No DAC at inference.
    dec.eval()
    with torch.no_grad():
        assert dec(memory, pos, (H, W), prompt, prompt_mask)['hs'].shape == (2, 2, NQ, D)
