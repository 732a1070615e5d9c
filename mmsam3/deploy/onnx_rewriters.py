"""mmdeploy rewriters that SAM 3's graphs need where mmdeploy 1.3.1's defaults are wrong.

They are registered for the ONNX IR (any backend), which mmdeploy prefers over its own
backend-agnostic defaults, and are active only inside mmdeploy's ``RewriterContext`` (the deploy
tool's export):

* ``layer_norm`` symbolic: mmdeploy decomposes LayerNorm into ReduceMean / Pow / Sqrt / Div,
  which overflows in FP16 (the variance of a 1024-channel ViT activation passes 65504) and that
  TensorRT cannot keep in FP32 as one layer. At opset >= 17 we emit torch's own single
  ``LayerNormalization`` node again (TensorRT's normalization layer).
* ``F.scaled_dot_product_attention``: mmdeploy's default rewrite divides by an explicit ``scale``
  instead of multiplying, and turns a boolean mask with Python ``not`` (an error for any mask of
  more than one element, and the wrong polarity). Ours is explicit MatMul -> Softmax -> MatMul
  with the right scale and ``True = attend`` boolean masks, the pattern TensorRT fuses (or keeps
  apart in FP32 when told to).
* ``group_norm`` symbolic (TensorRT backend): mmdeploy emits its own
  ``mmdeploy::TRTInstanceNormalization`` plugin op, which needs mmdeploy's TensorRT plugin
  library on the device (found by the op audit). TensorRT 10 parses ONNX ``InstanceNormalization``
  natively, so we emit torch's standard export (Reshape, InstanceNormalization, Mul, Add).
* ``torch.onnx.export``: recent torch defaults to the dynamo exporter, which bypasses every
  rewriter above; mmdeploy's ``export`` does not pass ``dynamo``. Inside the context the
  TorchScript exporter (``dynamo=False``) is used. A ``SAM3`` is exported as its three graphs
  and their manifest (:func:`mmsam3.deploy.graph_exporter.write_graph_set`), each graph with
  the original exporter inside the same context.
"""
import math

import torch
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.utils import IR

__all__ = [
    'layer_norm__onnx', 'group_norm__tensorrt', 'scaled_dot_product_attention__onnx',
    'onnx_export__torchscript'
]

MIN_LAYER_NORM_OPSET = 17


@SYMBOLIC_REWRITER.register_symbolic('layer_norm', is_pytorch=True, ir=IR.ONNX)
def layer_norm__onnx(g, input, normalized_shape, weight, bias, eps, cudnn_enable):
    """One ``LayerNormalization`` node (opset 17), as torch exports it without mmdeploy."""
    from torch.onnx import symbolic_opset17
    opset = getattr(g, 'opset', MIN_LAYER_NORM_OPSET)
    if opset < MIN_LAYER_NORM_OPSET:
        raise ValueError(f'SAM 3 export needs ONNX opset >= {MIN_LAYER_NORM_OPSET} for a fused '
                         f'LayerNormalization (got {opset}); set '
                         f'onnx_config.opset_version={MIN_LAYER_NORM_OPSET} in the deploy config')
    return symbolic_opset17.layer_norm(g, input, normalized_shape, weight, bias, eps,
                                       cudnn_enable)


@SYMBOLIC_REWRITER.register_symbolic('group_norm', backend='tensorrt', is_pytorch=True)
def group_norm__tensorrt(g, input, num_groups, weight, bias, eps, cudnn_enabled):
    """torch's own ``group_norm`` export: standard ONNX ops only, no plugin."""
    from torch.onnx import symbolic_opset9
    return symbolic_opset9.group_norm(g, input, num_groups, weight, bias, eps, cudnn_enabled)


def _prefer(registry, name: str, func) -> None:
    """Put our record for ``name`` first: among several valid rewriters mmdeploy takes the
    first registered, and its own modules are imported before ours."""
    records = registry._registry._rewrite_records.get(name, [])
    ours = [r for r in records if r['_object'] is func]
    records[:] = ours + [r for r in records if r['_object'] is not func]


_prefer(SYMBOLIC_REWRITER, 'group_norm', group_norm__tensorrt)


@FUNCTION_REWRITER.register_rewriter(
    func_name='torch.nn.functional.scaled_dot_product_attention', ir=IR.ONNX)
def scaled_dot_product_attention__onnx(query, key, value, attn_mask=None, dropout_p=0.0,
                                       is_causal=False, scale=None, enable_gqa=False):
    """``softmax(q k^T * scale + mask) v`` with torch's semantics.

    ``scale`` defaults to ``1 / sqrt(head_dim)``; a boolean ``attn_mask`` is True where a query
    may attend; a float mask is added. Dropout is ignored (export is inference).
    """
    if enable_gqa:
        raise NotImplementedError('grouped-query attention is not used by SAM 3')
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    attn = torch.matmul(query * scale, key.transpose(-2, -1))
    if is_causal:
        causal = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool,
                            device=query.device).tril()
        attn = attn.masked_fill(~causal, float('-inf'))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn = attn.masked_fill(~attn_mask, float('-inf'))
        else:
            attn = attn + attn_mask
    return torch.matmul(attn.softmax(dim=-1), value)


@FUNCTION_REWRITER.register_rewriter(func_name='torch.onnx.export', ir=IR.ONNX)
def onnx_export__torchscript(model, args, f, *rest, **kwargs):
    """``torch.onnx.export`` with the TorchScript exporter, the one mmdeploy's rewriters need;
    a ``SAM3`` becomes three graphs in ``dirname(f)``."""
    from functools import partial

    from ..models.detectors.sam3 import SAM3
    from .graph_exporter import write_graph_set
    ctx = FUNCTION_REWRITER.get_context()
    if kwargs.get('dynamo', False):
        raise ValueError('SAM 3 graphs are exported with the TorchScript exporter (rewriters '
                         'only apply there); do not pass dynamo=True')
    kwargs['dynamo'] = False
    if isinstance(model, SAM3):
        if rest:
            raise TypeError('export a SAM3 with keyword arguments after (model, args, f)')
        image = args if isinstance(args, torch.Tensor) else None
        return write_graph_set(
            model, ctx.cfg, f, partial(ctx.origin_func, dynamo=False), image=image,
            opset_version=kwargs.get('opset_version'),
            keep_initializers_as_inputs=bool(kwargs.get('keep_initializers_as_inputs')))
    return ctx.origin_func(model, args, f, *rest, **kwargs)
