# The tiny test model's size (configs/_base_/models/sam3_tiny.py).
_base_ = ['./_base_/sam3_onnx_static.py']
onnx_config = dict(input_shape=[168, 168])
codebase_config = dict(sam3=dict(max_prompts=4, max_boxes=4))
