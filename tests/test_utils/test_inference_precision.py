"""set_inference_dtype: autocast on the model's forward, fp32 islands, fp32 head outputs."""
import warnings

import pytest
import torch
from mmdet.structures import DetDataSample

from mmsam3.utils.inference_precision import (FP32_MODULES, inference_dtype_of, resolve_dtype,
                                              set_inference_dtype)


def test_resolve_dtype_aliases_and_errors():
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype('bf16') is resolve_dtype('bfloat16') is torch.bfloat16
    assert resolve_dtype('torch.float16') is resolve_dtype(torch.half) is torch.float16
    for bad in ('int8', 'float64', torch.float64, 3):
        with pytest.raises(ValueError, match='unsupported inference dtype'):
            resolve_dtype(bad)


def test_forward_runs_in_bf16_with_fp32_islands_and_outputs(bpe_path):
    from mmsam3.testing.tiny_model import build_tiny_sam3

    model = build_tiny_sam3(bpe_path).eval()
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen.setdefault(name, (out[0] if isinstance(out, (tuple, list)) else out).dtype)
        return hook

    for name in ('encoder', ) + FP32_MODULES:
        dict(model.named_modules())[name].register_forward_hook(record(name))
    sample = DetDataSample(metainfo=dict(texts=['red box'], img_shape=(168, 168),
                                         ori_shape=(168, 168), scale_factor=(1.0, 1.0),
                                         batch_input_shape=(168, 168)))
    image = torch.rand(1, 3, 168, 168) * 2 - 1
    with torch.no_grad():
        ref = model(image, [sample], mode='tensor')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # a CPU without native bf16 warns (tested below)
            set_inference_dtype(model, 'bf16')
        assert inference_dtype_of(model) is torch.bfloat16
        seen.clear()
        low = model(image, [sample], mode='tensor')
        assert seen['encoder'] == torch.bfloat16
        for name in FP32_MODULES:
            assert seen[name] == torch.float32, name
        assert all(v.dtype == torch.float32 for v in low.values() if torch.is_tensor(v))
        assert 0 < (low['logits'] - ref['logits']).abs().max() < 0.1
        set_inference_dtype(model, 'fp32')  # undone: exactly the fp32 numbers again
        torch.testing.assert_close(model(image, [sample], mode='tensor')['logits'],
                                   ref['logits'], rtol=0, atol=0)
        assert not torch.is_autocast_enabled('cpu')  # no autocast state leaks


def test_warns_on_cpu_without_native_bf16():
    model = torch.nn.Linear(4, 4)
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        set_inference_dtype(model, 'bf16')
    assert any('without native' in str(w.message) for w in caught) == (not native)
