# TensorRT 10 at 1008x1008; see _base_/sam3_tensorrt_static.py.
_base_ = ['./_base_/sam3_tensorrt_static.py']
onnx_config = dict(input_shape=[1008, 1008])
max_prompts = 16
max_boxes = 8
codebase_config = dict(sam3=dict(max_prompts=max_prompts, max_boxes=max_boxes))
feats = dict(
    feat_s4=dict(min_shape=[1, 256, 288, 288], opt_shape=[1, 256, 288, 288],
                 max_shape=[1, 256, 288, 288]),
    feat_s8=dict(min_shape=[1, 256, 144, 144], opt_shape=[1, 256, 144, 144],
                 max_shape=[1, 256, 144, 144]),
    feat_s16=dict(min_shape=[1, 256, 72, 72], opt_shape=[1, 256, 72, 72],
                  max_shape=[1, 256, 72, 72]))
backend_config = dict(
    common_config=dict(fp16_mode=False),
    model_inputs=[
        dict(input_shapes=dict(
            image=dict(min_shape=[1, 3, 1008, 1008], opt_shape=[1, 3, 1008, 1008],
                       max_shape=[1, 3, 1008, 1008]))),
        dict(input_shapes=dict(
            token_ids=dict(min_shape=[1, 32], opt_shape=[4, 32], max_shape=[max_prompts, 32]))),
        dict(input_shapes=dict(
            **feats,
            text_feats=dict(min_shape=[1, 32, 256], opt_shape=[4, 32, 256],
                            max_shape=[max_prompts, 32, 256]),
            text_mask=dict(min_shape=[1, 32], opt_shape=[4, 32], max_shape=[max_prompts, 32]),
            boxes=dict(min_shape=[1, 1, 4], opt_shape=[4, 1, 4],
                       max_shape=[max_prompts, max_boxes, 4]),
            box_labels=dict(min_shape=[1, 1], opt_shape=[4, 1],
                            max_shape=[max_prompts, max_boxes]),
            box_mask=dict(min_shape=[1, 1], opt_shape=[4, 1],
                          max_shape=[max_prompts, max_boxes]))),
    ])
