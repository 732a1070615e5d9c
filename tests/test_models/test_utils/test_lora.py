"""LoRA (peft) on the tiny SAM 3 towers, and the frozen-towers option."""
import numpy as np
import pytest
import torch

pytest.importorskip('peft', reason='LoRA needs the `peft` package')

from mmsam3.testing.tiny_model import build_tiny_sam3  # noqa: E402

SIZE = 168


def training_batch():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    masks = np.zeros((1, SIZE, SIZE), np.uint8)
    masks[0, 10:50, 10:60] = 1
    sample = DetDataSample(metainfo=dict(
        texts=['red apple', 'dog'], prompt_labels=[3, 5], img_shape=(SIZE, SIZE),
        ori_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 10, 60, 50]]),
                                       labels=torch.tensor([3]),
                                       masks=BitmapMasks(masks, SIZE, SIZE))
    torch.manual_seed(1)
    return torch.randn(1, 3, SIZE, SIZE), [sample]


def tower_outputs(model):
    torch.manual_seed(2)
    img = torch.randn(1, 3, SIZE, SIZE)
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(img)
        text = model.encode_texts(['red apple'])
    return [f.clone() for f in feats] + [t.clone().float() for t in text]


LORA = dict(r=4, lora_alpha=8, lora_dropout=0.1)


def test_lora_trainable_set_and_equivalence(bpe_path):
    from mmengine.runner.checkpoint import load_state_dict
    plain = build_tiny_sam3(bpe_path)
    model = build_tiny_sam3(bpe_path, lora=LORA)
    names = {n for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in names if 'lora_' in n}
    # Targets: ViT qkv / proj / fc1 / fc2 and text out_proj / c_fc / c_proj / in_proj_weight.
    for key in ('blocks.0.attn.qkv.lora_A', 'blocks.0.attn.proj.lora_B', 'blocks.3.mlp.fc1',
                'blocks.3.mlp.fc2', 'resblocks.0.attn.lora_A', 'resblocks.0.attn.base_layer.'
                'out_proj.lora_B', 'resblocks.1.mlp.c_fc.lora_A', 'resblocks.1.mlp.c_proj'):
        assert any(key in n for n in lora), key
    assert not any('patch_embed' in n for n in lora)
    towers = {n for n in names if n.startswith(('backbone.', 'text_encoder.'))}
    assert trainable & towers == lora  # only adapters train inside the towers
    heads = {n for n, p in plain.named_parameters() if p.requires_grad
             and not n.startswith(('backbone.', 'text_encoder.'))}
    assert heads and heads <= trainable  # decoder, heads, neck, encoders stay trainable

    # A plain (e.g. converted official) state dict fills the wrapped base weights.
    load_state_dict(model, plain.state_dict(), strict=False)  # mmengine's loader (load_from)
    incompatible = model.load_state_dict(plain.state_dict(), strict=False)
    missing = incompatible.missing_keys
    assert missing and all('lora_' in k for k in missing)
    assert not incompatible.unexpected_keys
    model.init_weights()
    # lora_B starts at zero: the adapted towers compute exactly what the plain ones do.
    for a, b in zip(tower_outputs(model), tower_outputs(plain)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_lora_backward_and_checkpoint_roundtrip(bpe_path, tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
    model = build_tiny_sam3(bpe_path, lora=LORA)
    model.train()
    inputs, samples = training_batch()
    losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith('backbone.') for n in frozen)  # the towers' base weights
    assert all(grads[n] is None for n in frozen), [n for n in frozen if grads[n] is not None]
    for tower in ('backbone.', 'text_encoder.'):
        lora_b = [g for n, g in grads.items() if n.startswith(tower) and 'lora_B' in n]
        assert lora_b and all(g is not None for g in lora_b)
        assert any(g.abs().sum() > 0 for g in lora_b), tower
    decoder_grad = grads['decoder.' + next(n for n, _ in model.decoder.named_parameters())]
    assert decoder_grad is not None and decoder_grad.abs().sum() > 0

    # Give the adapters non-zero weights, save, load into a fresh LoRA model: same outputs.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'lora_B' in n:
                p.normal_(0, 0.05)
    path = str(tmp_path / 'lora.pth')
    save_checkpoint({'state_dict': model.state_dict()}, path)
    fresh = build_tiny_sam3(bpe_path, lora=LORA)
    torch.manual_seed(123)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(0.01)
    load_checkpoint(fresh, path, map_location='cpu', strict=True)
    for a, b in zip(tower_outputs(fresh), tower_outputs(model)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    plain_out = tower_outputs(build_tiny_sam3(bpe_path))
    assert not torch.allclose(tower_outputs(model)[0], plain_out[0])  # adapters do act


def test_frozen_towers(bpe_path):
    model = build_tiny_sam3(bpe_path, frozen_modules=('backbone', 'text_encoder'))
    for n, p in model.named_parameters():
        if n.startswith(('backbone.', 'text_encoder.')):
            assert not p.requires_grad, n
    assert any(p.requires_grad for n, p in model.decoder.named_parameters())
    model.train()
    assert not model.backbone.training and not model.text_encoder.training
    assert model.decoder.training
    inputs, samples = training_batch()
    losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    with pytest.raises(KeyError, match='no child'):
        build_tiny_sam3(bpe_path, frozen_modules=('vit', ))
