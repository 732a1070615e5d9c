# TensorRT 10 at 168x168 (tiny test model); see _base_/sam3_tensorrt_static.py.
_base_ = ['./_base_/sam3_tensorrt_static.py']
onnx_config = dict(input_shape=[168, 168])
max_prompts = 4
max_boxes = 4
codebase_config = dict(sam3=dict(max_prompts=max_prompts, max_boxes=max_boxes))
feats = dict(
    feat_s4=dict(min_shape=[1, 64, 48, 48], opt_shape=[1, 64, 48, 48],
                 max_shape=[1, 64, 48, 48]),
    feat_s8=dict(min_shape=[1, 64, 24, 24], opt_shape=[1, 64, 24, 24],
                 max_shape=[1, 64, 24, 24]),
    feat_s16=dict(min_shape=[1, 64, 12, 12], opt_shape=[1, 64, 12, 12],
                  max_shape=[1, 64, 12, 12]))
backend_config = dict(
    common_config=dict(fp16_mode=False),
    model_inputs=[
        dict(input_shapes=dict(
            image=dict(min_shape=[1, 3, 168, 168], opt_shape=[1, 3, 168, 168],
                       max_shape=[1, 3, 168, 168]))),
        dict(input_shapes=dict(
            token_ids=dict(min_shape=[1, 32], opt_shape=[4, 32], max_shape=[max_prompts, 32]))),
        dict(input_shapes=dict(
            **feats,
            text_feats=dict(min_shape=[1, 32, 64], opt_shape=[4, 32, 64],
                            max_shape=[max_prompts, 32, 64]),
            text_mask=dict(min_shape=[1, 32], opt_shape=[4, 32], max_shape=[max_prompts, 32]),
            boxes=dict(min_shape=[1, 1, 4], opt_shape=[4, 1, 4],
                       max_shape=[max_prompts, max_boxes, 4]),
            box_labels=dict(min_shape=[1, 1], opt_shape=[4, 1],
                            max_shape=[max_prompts, max_boxes]),
            box_mask=dict(min_shape=[1, 1], opt_shape=[4, 1],
                          max_shape=[max_prompts, max_boxes]))),
    ])
