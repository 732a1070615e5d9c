"""SAM 3's mmdeploy rewriters: fused LayerNorm, a correct SDPA, the TorchScript exporter."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmsam3.deploy  # noqa: F401  (registers the rewriters)


def _export(module, args, backend='onnxruntime', opset=17):
    """Through mmdeploy's own export (RewriterContext with a deploy config)."""
    import tempfile

    from mmdeploy.apis.onnx import export
    with tempfile.TemporaryDirectory() as tmp:
        export(module, args, f'{tmp}/m', backend=backend, input_names=['x'],
               opset_version=opset, context_info=dict(deploy_cfg=dict()))
        return onnx.load(f'{tmp}/m.onnx')


def _run(model, *inputs):
    sess = ort.InferenceSession(model.SerializeToString())
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0]


@pytest.mark.parametrize('backend', ['onnxruntime', 'tensorrt'])
def test_layer_norm_stays_one_node(backend):
    ln = nn.LayerNorm(16).eval()
    x = torch.randn(2, 5, 16)
    model = _export(ln, (x, ), backend)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('LayerNormalization') == 1 and 'ReduceMean' not in ops and 'Pow' not in ops
    np.testing.assert_allclose(_run(model, x), ln(x).detach().numpy(), atol=1e-5)


def test_layer_norm_needs_opset_17():
    with pytest.raises(Exception, match='opset >= 17'):
        _export(nn.LayerNorm(8), (torch.randn(1, 8), ), opset=16)


class _Attention(nn.Module):

    def __init__(self, scale=None, mask=None):
        super().__init__()
        self.scale, self.mask = scale, mask

    def forward(self, x):
        q, k, v = x, x.flip(-2) * 0.5, x + 1
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, scale=self.scale)


@pytest.mark.parametrize('case', ['explicit_scale', 'bool_mask', 'float_mask'])
def test_sdpa_scale_and_masks_match_torch(case):
    x = torch.randn(2, 3, 6, 8)
    mask = None
    if case == 'bool_mask':
        mask = torch.ones(6, 6, dtype=torch.bool).tril()  # True = may attend (torch semantics)
    elif case == 'float_mask':
        mask = torch.randn(6, 6)
    module = _Attention(scale=0.05 if case == 'explicit_scale' else None, mask=mask)
    model = _export(module, (x, ))
    # mmdeploy's own rewrite divides by an explicit scale and fails on boolean masks.
    np.testing.assert_allclose(_run(model, x), module(x).numpy(), atol=1e-5)


def test_export_inside_the_context_is_torchscript():
    # The dynamo exporter produces no 'onnx::' debug names and bypasses the rewriters; the
    # fused LayerNorm above proves the symbolic rewriter ran, which only the TorchScript
    # exporter consults. An explicit dynamo=True is refused with the reason.
    from mmdeploy.core import RewriterContext
    from mmdeploy.utils import IR
    buf = io.BytesIO()
    with RewriterContext(cfg=dict(), backend='onnxruntime', ir=IR.ONNX, opset=17):
        with pytest.raises(ValueError, match='TorchScript exporter'):
            torch.onnx.export(nn.Linear(2, 2), (torch.randn(1, 2), ), buf, dynamo=True)
