# SAM3-Small tiers (configs/sam3_small/, 672 px input).
_base_ = ['./_base_/sam3_onnx_static.py']
onnx_config = dict(input_shape=[672, 672])
