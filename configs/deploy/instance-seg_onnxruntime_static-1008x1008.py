_base_ = ['./_base_/sam3_onnx_static.py']
onnx_config = dict(input_shape=[1008, 1008])
