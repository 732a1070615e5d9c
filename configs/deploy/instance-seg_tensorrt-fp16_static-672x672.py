# TensorRT 10 fp16 at 672x672, the SAM3-Small tiers (configs/sam3_small/) on a Jetson; see
# _base_/sam3_tensorrt_static.py and docs/deployment.md for the layers kept in fp32.
_base_ = ['./_base_/sam3_tensorrt_static.py']
onnx_config = dict(input_shape=[672, 672])
max_prompts = 16
max_boxes = 8
codebase_config = dict(sam3=dict(max_prompts=max_prompts, max_boxes=max_boxes))
feats = dict(
    feat_s4=dict(min_shape=[1, 256, 192, 192], opt_shape=[1, 256, 192, 192],
                 max_shape=[1, 256, 192, 192]),
    feat_s8=dict(min_shape=[1, 256, 96, 96], opt_shape=[1, 256, 96, 96],
                 max_shape=[1, 256, 96, 96]),
    feat_s16=dict(min_shape=[1, 256, 48, 48], opt_shape=[1, 256, 48, 48],
                  max_shape=[1, 256, 48, 48]))
backend_config = dict(
    common_config=dict(fp16_mode=True),
    model_inputs=[
        dict(input_shapes=dict(
            image=dict(min_shape=[1, 3, 672, 672], opt_shape=[1, 3, 672, 672],
                       max_shape=[1, 3, 672, 672]))),
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
