"""Low-precision inference (bf16 / fp16): autocast around the model, fp32 where it matters.

``set_inference_dtype(model, 'bfloat16')`` makes every forward of ``model`` run under
``torch.autocast`` on the model's device (CPU or CUDA): matrix multiplies, convolutions and
attention run in the low dtype, while autocast keeps its own fp32 list (e.g. ``layer_norm`` on
CUDA, reductions) and mmsam3's RoPE / sine position encodings compute in fp32 themselves. On top
of that the modules named in :data:`FP32_MODULES` run in fp32 (autocast off, inputs cast up),
and the head's raw outputs are cast to fp32, so the post-processing (sigmoid scores, box
rescaling, mask resizing and thresholding) and everything downstream (metrics, ``.numpy()``)
see fp32. See docs/inference.md (bf16 / fp16) for the measured drift behind the choice.

The switch in a config is ``model.test_cfg.dtype`` (read by :func:`inference_dtype_from_cfg`).
"""
import contextlib
import warnings
from typing import Iterable, Optional, Union

import torch
from torch import nn

__all__ = ['SUPPORTED_DTYPES', 'FP32_MODULES', 'resolve_dtype', 'autocast_context',
           'set_inference_dtype', 'inference_dtype_of', 'inference_dtype_from_cfg']

SUPPORTED_DTYPES = {
    'float32': torch.float32, 'fp32': torch.float32, 'float': torch.float32,
    'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16,
    'float16': torch.float16, 'fp16': torch.float16, 'half': torch.float16,
}

# Small modules whose outputs feed the box / score maths directly: the box-refinement MLP (its
# delta is added to inverse_sigmoid(reference) every layer), the presence head (one logit
# multiplies every score of the prompt), the box relative-position bias MLPs (log-scaled
# distances into every decoder cross-attention) and the scoring head (query-vs-prompt logits).
# Together < 1% of the FLOPs; on the tiny model they halve the presence-logit drift and cut the
# score drift by about a fifth (docs/inference.md). The rest of the drift comes from the
# towers, where bf16 is the point.
FP32_MODULES = ('decoder.bbox_embed', 'decoder.presence_token_head', 'decoder.boxRPB_embed_x',
                'decoder.boxRPB_embed_y', 'bbox_head.scoring_head')

_HANDLES = '_inference_dtype_handles'


def resolve_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    """``'bf16'`` / ``'bfloat16'`` / ``torch.bfloat16`` / ... -> the torch dtype (None: fp32).

    Raises:
        ValueError: for anything else, naming the accepted values.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in SUPPORTED_DTYPES.values():
            return dtype
    elif isinstance(dtype, str) and dtype.lower().replace('torch.', '') in SUPPORTED_DTYPES:
        return SUPPORTED_DTYPES[dtype.lower().replace('torch.', '')]
    raise ValueError(f'unsupported inference dtype {dtype!r}; use one of float32 (fp32), '
                     'bfloat16 (bf16) or float16 (fp16)')


def autocast_context(device: Union[str, torch.device], dtype: torch.dtype):
    """``torch.autocast`` for ``device``'s type in ``dtype``; a no-op context for fp32."""
    dtype = resolve_dtype(dtype)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device('cpu')


def _cpu_has_native(dtype: torch.dtype) -> bool:
    try:
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: let it run, no claim
        return True


def _to_fp32(x):
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_fp32(v) for v in x)
    if isinstance(x, dict):
        return {k: _to_fp32(v) for k, v in x.items()}
    return x


class _ContextHooks:
    """Enter a context before a module's forward and leave it after (also on an exception)."""

    def __init__(self, make_context, cast_inputs: bool = False, cast_outputs: bool = False):
        self.make_context = make_context
        self.cast_inputs = cast_inputs
        self.cast_outputs = cast_outputs
        self.stack = []

    def pre(self, module, args, kwargs):
        ctx = self.make_context(module)
        ctx.__enter__()
        self.stack.append(ctx)
        if self.cast_inputs:
            return _to_fp32(args), _to_fp32(kwargs)
        return None

    def post(self, module, args, kwargs, output):
        self.stack.pop().__exit__(None, None, None)
        return _to_fp32(output) if self.cast_outputs else None

    def attach(self, module: nn.Module) -> list:
        return [module.register_forward_pre_hook(self.pre, with_kwargs=True),
                module.register_forward_hook(self.post, with_kwargs=True, always_call=True)]


def set_inference_dtype(model: nn.Module,
                        dtype: Union[str, torch.dtype, None],
                        fp32_modules: Iterable[str] = FP32_MODULES) -> nn.Module:
    """Run ``model``'s forwards in ``dtype`` (see the module doc); fp32 undoes it.

    Args:
        model: the detector (any ``nn.Module``; ``fp32_modules`` not present are skipped).
        dtype: ``float32`` / ``bfloat16`` / ``float16`` or an alias (:func:`resolve_dtype`).
        fp32_modules: names (``named_modules``) of sub-modules kept in fp32.

    Returns:
        ``model`` itself, with ``model.inference_dtype`` set. The autocast hook sits on the
        model's own forward (``test_step`` / ``predict`` / ``_forward``); code that calls the
        stages directly (:class:`mmsam3.apis.SAM3Predictor`) wraps them in
        :func:`autocast_context` itself, and the fp32 modules and head hooks act there too.
    """
    dtype = resolve_dtype(dtype)
    if dtype != torch.float32 and _device_of(model).type == 'cpu' and \
            not _cpu_has_native(dtype):
        warnings.warn(f'{dtype} inference on a CPU without native {dtype} matrix multiply '
                      f'(capability {torch.backends.cpu.get_cpu_capability()}; needs AVX512-BF16 '
                      'or AMX): it runs through fallback kernels, many times slower than fp32')
    for handle in getattr(model, _HANDLES, []):
        handle.remove()
    handles = []
    model.inference_dtype = dtype
    if dtype != torch.float32:
        root = _ContextHooks(lambda m: autocast_context(_device_of(m), dtype))
        handles += root.attach(model)
        named = dict(model.named_modules())
        for name in fp32_modules:
            if name in named:
                island = _ContextHooks(
                    lambda m: torch.autocast(device_type=_device_of(m).type, enabled=False),
                    cast_inputs=True)
                handles += island.attach(named[name])
        head = getattr(model, 'bbox_head', None)
        if isinstance(head, nn.Module):
            handles += _ContextHooks(lambda m: contextlib.nullcontext(),
                                     cast_outputs=True).attach(head)
    setattr(model, _HANDLES, handles)
    return model


def inference_dtype_of(model: nn.Module) -> torch.dtype:
    """The dtype :func:`set_inference_dtype` gave ``model`` (fp32 when never called)."""
    return getattr(model, 'inference_dtype', torch.float32)


def inference_dtype_from_cfg(cfg) -> Optional[str]:
    """``model.test_cfg.dtype`` of a config (None when absent)."""
    model_cfg = cfg.get('model', {}) if hasattr(cfg, 'get') else {}
    test_cfg = model_cfg.get('test_cfg', None) or {}
    return test_cfg.get('dtype', None)
