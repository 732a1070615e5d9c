"""SAM3ViT: official parity (tiny sizes, window + global blocks, padding), keys, errors,
DataParallel, freezing and the layer-id rule."""
import pytest
import torch

from mmsam3.models.backbones import SAM3ViT, get_vit_layer_id

TINY = dict(patch_size=14,
            embed_dims=32,
            depth=4,
            num_heads=2,
            mlp_ratio=4.625,
            window_size=4,
            global_att_blocks=(1, 3),
            pretrain_img_size=56)


def _ours(**kwargs):
    cfg = dict(TINY, img_size=112)
    cfg.update(kwargs)
    return SAM3ViT(**cfg)


def _official(img_size):
    from sam3.model.vitdet import ViT
    return ViT(img_size=img_size,
               pretrain_img_size=TINY['pretrain_img_size'],
               patch_size=14,
               embed_dim=TINY['embed_dims'],
               depth=TINY['depth'],
               num_heads=TINY['num_heads'],
               mlp_ratio=TINY['mlp_ratio'],
               norm_layer='LayerNorm',
               drop_path_rate=0.1,
               qkv_bias=True,
               use_abs_pos=True,
               tile_abs_pos=True,
               global_att_blocks=TINY['global_att_blocks'],
               rel_pos_blocks=(),
               use_rope=True,
               use_interp_rope=True,
               window_size=TINY['window_size'],
               pretrain_use_cls_token=True,
               retain_cls_token=False,
               ln_pre=True,
               ln_post=False,
               return_interm_layers=False,
               bias_patch_embed=False)


def _official_trunk_state(ref):
    return {k: v for k, v in ref.state_dict().items() if 'freqs_cis' not in k}


# 112: 8x8 tokens (2x2 windows), 140: 10x10 (window padding), 168: 12x12 (3x3 windows).
@pytest.mark.requires_official
@pytest.mark.parametrize('img_size', [112, 140, 168])
def test_matches_official(img_size):
    torch.manual_seed(0)
    ref = _official(img_size).eval()
    for name, p in ref.named_parameters():
        if 'norm' in name or name.endswith('bias'):
            torch.nn.init.normal_(p, std=0.2)
    ours = _ours().eval()
    ours.load_state_dict(_official_trunk_state(ref), strict=True)
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        (ref_out, ) = ref(x)
        out = ours(x)
    assert isinstance(out, tuple) and len(out) == 1
    g = img_size // 14
    assert out[0].shape == (2, TINY['embed_dims'], g, g)
    diff = (out[0] - ref_out).abs().max().item()
    assert diff <= 1e-5, diff


@pytest.mark.requires_official
def test_state_dict_keys_match_official():
    ref_keys = set(_official_trunk_state(_official(112)))
    ours = _ours()
    assert set(ours.state_dict()) == ref_keys
    assert ours.pos_embed.shape == (1, 17, 32)
    assert ours.patch_embed.proj.bias is None
    assert not any('freqs_cis' in k for k in ours.state_dict())
    assert ours.state_dict()['blocks.0.mlp.fc1.weight'].shape == (148, 32)


def test_non_square_and_bad_sizes():
    ours = _ours().eval()
    with torch.no_grad():
        (out, ) = ours(torch.randn(1, 3, 112, 196))
    assert out.shape == (1, 32, 8, 14)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match='multiple of the patch size'):
        ours(torch.randn(1, 3, 113, 112))
    with pytest.raises(ValueError, match='multiple of the patch size'):
        ours(torch.randn(1, 3, 112, 120))
    with pytest.raises(ValueError):
        ours(torch.randn(3, 112, 112))


def test_data_parallel_forward_backward():
    torch.manual_seed(0)
    ours = _ours(drop_path_rate=0.1, with_cp=True).train()
    dp = torch.nn.DataParallel(ours)
    x = torch.randn(2, 3, 112, 112)
    (out, ) = dp(x)
    assert out.shape == (2, 32, 8, 8)
    out.mean().backward()
    grads = {n: p.grad for n, p in ours.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads['pos_embed'][:, 1:].abs().sum() > 0


def test_frozen_stages():
    ours = _ours(frozen_stages=2)
    ours.train()
    assert not ours.pos_embed.requires_grad
    assert not ours.patch_embed.proj.weight.requires_grad
    assert not ours.ln_pre.weight.requires_grad
    assert not any(p.requires_grad for p in ours.blocks[1].parameters())
    assert all(p.requires_grad for p in ours.blocks[2].parameters())
    assert not ours.blocks[1].training and ours.blocks[2].training
    with pytest.raises(ValueError):
        _ours(frozen_stages=5)
    with pytest.raises(ValueError):
        _ours(global_att_blocks=(4, ))


@pytest.mark.requires_official
def test_layer_id_matches_official():
    ref = _official(112)
    for name, _ in ref.named_parameters():
        assert get_vit_layer_id(name, 4) == ref.get_layer_id(name), name
        assert get_vit_layer_id('backbone.' + name, 4) == ref.get_layer_id(name), name
    assert get_vit_layer_id('blocks.3.attn.qkv.weight', 4) == 4
    assert get_vit_layer_id('ln_pre.weight', 4) == 0
    assert get_vit_layer_id('something_else', 4) == 5
    assert _ours().get_layer_id('blocks.0.norm1.weight') == 1


def test_registry_build_and_metadata():
    from mmdet.registry import MODELS
    model = MODELS.build(dict(type='SAM3ViT', **TINY))
    assert isinstance(model, SAM3ViT)
    cfg = SAM3ViT.pretrained_cfg
    assert cfg['mean'] == (0.5, 0.5, 0.5) and cfg['std'] == (0.5, 0.5, 0.5)
    assert cfg['input_size'] == (3, 1008, 1008) and cfg['patch_size'] == 14


@pytest.mark.requires_official
@pytest.mark.slow
def test_full_size_matches_official_at_1008():
    """Full SAM 3 trunk (446 M params, random weights) against the official one at 1008 px."""
    from sam3.model.vitdet import ViT
    torch.manual_seed(0)
    ref = ViT(img_size=1008,
              pretrain_img_size=336,
              patch_size=14,
              embed_dim=1024,
              depth=32,
              num_heads=16,
              mlp_ratio=4.625,
              norm_layer='LayerNorm',
              drop_path_rate=0.1,
              qkv_bias=True,
              use_abs_pos=True,
              tile_abs_pos=True,
              global_att_blocks=(7, 15, 23, 31),
              rel_pos_blocks=(),
              use_rope=True,
              use_interp_rope=True,
              window_size=24,
              pretrain_use_cls_token=True,
              retain_cls_token=False,
              ln_pre=True,
              ln_post=False,
              return_interm_layers=False,
              bias_patch_embed=False).eval()
    ours = SAM3ViT().eval()
    ours.load_state_dict(_official_trunk_state(ref), strict=True)
    for blk in (0, 7):  # RoPE tables of a window and a global block equal the buffers
        cos, sin = ours.blocks[blk].attn.rope.cos_sin((24, 24) if blk == 0 else (72, 72))
        torch.testing.assert_close(cos, ref.blocks[blk].attn.freqs_cis.real, rtol=0, atol=1e-6)
        torch.testing.assert_close(sin, ref.blocks[blk].attn.freqs_cis.imag, rtol=0, atol=1e-6)
    x = torch.randn(1, 3, 1008, 1008)
    with torch.no_grad():
        (ref_out, ) = ref(x)
        (out, ) = ours(x)
    assert out.shape == (1, 1024, 72, 72)
    diff = (out - ref_out).abs().max().item()
    assert diff <= 1e-4 * max(1.0, ref_out.abs().max().item()), diff


def test_bf16_autocast():
    ours = _ours().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        (out, ) = ours(torch.randn(1, 3, 140, 112))
    assert out.shape == (1, 32, 10, 8) and torch.isfinite(out.float()).all()


# Tracing turns shape arithmetic into constants (TracerWarning); the onnxruntime comparison
# below checks the exported graph at this shape.
@pytest.mark.filterwarnings('ignore:Converting a tensor to a Python:torch.jit.TracerWarning')
def test_onnx_export_tiny_vit():
    import io
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    ours = _ours().eval()
    x = torch.randn(1, 3, 140, 168)  # window padding on both axes, non-square global grid
    buf = io.BytesIO()
    torch.onnx.export(ours, (x, ), buf, dynamo=False, opset_version=17, input_names=['img'])
    model = onnx.load_from_string(buf.getvalue())
    assert not any('omplex' in n.op_type for n in model.graph.node)
    sess = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    (y_ort, ) = sess.run(None, {'img': x.numpy()})
    with torch.no_grad():
        (y, ) = ours(x)
    assert (torch.from_numpy(y_ort) - y).abs().max() <= 1e-4
