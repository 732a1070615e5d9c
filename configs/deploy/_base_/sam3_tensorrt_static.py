# TensorRT 10 engines built from the three ONNX graphs. One optimisation profile per graph:
# model_inputs[i] is graph i (vision tower, text tower, prompt decoder), min / opt / max shapes.
# Prompts beyond max_prompts are run in chunks by the deployed model. Engines are tied to one
# TensorRT version and GPU: build them on the device (tools/deployment/build_trt_engines.sh).
_base_ = ['./sam3_onnx_static.py']
backend_config = dict(
    type='tensorrt',
    common_config=dict(fp16_mode=False, max_workspace_size=1 << 32),
    model_inputs=None)
