# TensorRT 10 fp16 at 1008x1008: the fp32 config with fp16 kernels allowed (see
# docs/deployment.md for the layers kept in fp32).
_base_ = ['./instance-seg_tensorrt_static-1008x1008.py']
backend_config = dict(common_config=dict(fp16_mode=True))
