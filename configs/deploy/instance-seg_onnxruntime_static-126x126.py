# The retention experiment's compressed student
# (configs/sam3_small/retention/sam3-tiny4_126_shapes.py).
_base_ = ['./_base_/sam3_onnx_static.py']
onnx_config = dict(input_shape=[126, 126])
codebase_config = dict(sam3=dict(max_prompts=4, max_boxes=4))
