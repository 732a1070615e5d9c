"""2-D RoPE: parity with the official complex implementation, layout, dtype and ONNX export."""
import io

import pytest
import torch

from mmsam3.models.layers import RoPE2D, SAM3ViTAttention, apply_rope_2d, rope_2d_cos_sin


@pytest.mark.requires_official
@pytest.mark.parametrize('grid,pt', [(24, 24), (72, 24), (4, 4), (12, 4)])
def test_cos_sin_match_official_freqs_cis(grid, pt):
    from sam3.model.vitdet import compute_axial_cis

    ref = compute_axial_cis(dim=64, end_x=grid, end_y=grid, theta=10000.0, scale_pos=pt / grid)
    cos, sin = RoPE2D(64, pt_size=pt, interp=True).cos_sin((grid, grid))
    assert cos.shape == sin.shape == (grid * grid, 32)
    assert cos.dtype == torch.float32
    torch.testing.assert_close(cos, ref.real, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, ref.imag, rtol=0, atol=1e-6)


@pytest.mark.requires_official
def test_apply_matches_official_apply_rotary_enc():
    from sam3.model.vitdet import apply_rotary_enc, compute_axial_cis

    torch.manual_seed(0)
    q = torch.randn(2, 3, 36, 16)
    k = torch.randn(2, 3, 36, 16)
    ref_q, ref_k = apply_rotary_enc(q, k, compute_axial_cis(16, 6, 6, scale_pos=4 / 6))
    out_q, out_k = RoPE2D(16, pt_size=4, interp=True)(q, k, (6, 6))
    assert (out_q - ref_q).abs().max() <= 1e-6
    assert (out_k - ref_k).abs().max() <= 1e-6


def test_interleaved_pairs_and_axes():
    """Pair (2j, 2j+1) of the first half rotates with the column, the second half with the row."""
    head_dim, grid = 8, (2, 3)
    cos, sin = rope_2d_cos_sin(head_dim, grid)
    x = torch.zeros(1, 1, 6, head_dim)
    x[..., 0] = 1.0  # pair 0, x-axis, frequency 1
    x[..., 4] = 1.0  # pair 2, y-axis, frequency 1
    out = apply_rope_2d(x, cos, sin)[0, 0]
    cols = torch.arange(6) % 3
    rows = torch.arange(6) // 3
    torch.testing.assert_close(out[:, 0], torch.cos(cols.float()))
    torch.testing.assert_close(out[:, 1], torch.sin(cols.float()))
    torch.testing.assert_close(out[:, 4], torch.cos(rows.float()))
    torch.testing.assert_close(out[:, 5], torch.sin(rows.float()))
    # A rotation keeps norms.
    y = torch.randn(2, 2, 6, head_dim)
    torch.testing.assert_close(apply_rope_2d(y, cos, sin).norm(dim=-1), y.norm(dim=-1))


def test_stateless_and_dtype():
    rope = RoPE2D(16, pt_size=4)
    assert list(rope.parameters()) == [] and list(rope.buffers()) == []
    assert rope.state_dict() == {}
    q = torch.randn(1, 2, 16, 16, dtype=torch.bfloat16)
    out_q, out_k = rope(q, q, (4, 4))
    assert out_q.dtype == out_k.dtype == torch.bfloat16
    with pytest.raises(ValueError):
        RoPE2D(6)
    with pytest.raises(ValueError):
        RoPE2D(8, pt_size=None, interp=True)


# Tracing turns shape arithmetic into constants (TracerWarning); the onnxruntime comparison
# below checks the exported graph at this shape.
@pytest.mark.filterwarnings('ignore:Converting a tensor to a Python:torch.jit.TracerWarning')
def test_onnx_export_has_no_complex_ops_and_matches():
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    attn = SAM3ViTAttention(32, 2, rope_pt_size=4, rope_interp=True).eval()
    x = torch.randn(2, 6, 6, 32)
    buf = io.BytesIO()
    torch.onnx.export(attn, (x, ),
                      buf,
                      dynamo=False,
                      opset_version=17,
                      input_names=['x'],
                      output_names=['y'])
    model = onnx.load_from_string(buf.getvalue())
    op_types = {node.op_type for node in model.graph.node}
    assert not any('omplex' in op for op in op_types), op_types
    for tensor in list(model.graph.initializer):
        assert tensor.data_type not in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)
    sess = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    (y_ort, ) = sess.run(None, {'x': x.numpy()})
    with torch.no_grad():
        y = attn(x)
    assert abs(torch.from_numpy(y_ort) - y).max() <= 1e-5
