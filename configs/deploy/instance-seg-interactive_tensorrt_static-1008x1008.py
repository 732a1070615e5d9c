# TensorRT 10 at 1008x1008 for SAM 3 with clicks; see _base_/sam3_tensorrt_static.py.
# The three concept graphs' profiles (as instance-seg_tensorrt_static-1008x1008.py) and a fourth for
# the interactive decoder (clicks, boxes, mask prompts; exported for a model with interactive_head,
# e.g. configs/_base_/models/sam3_vit-l_interactive.py). Its dynamic axis is the number of points P:
# the clicks, a box's two corners and the padding point DeployedSAM3 appends (one click: P = 2).
# P = 0 (a mask prompt alone, as Meta's predictor runs it) is outside this profile, and
# DeployedSAM3 says so on such an engine; min_shape P = 0 needs TensorRT's empty-tensor support
# (not checked here: no GPU). See docs/deployment.md ("Clicks").
_base_ = ['./_base_/sam3_tensorrt_static.py']
onnx_config = dict(input_shape=[1008, 1008])
max_prompts = 16
max_boxes = 8
max_points = 32
codebase_config = dict(
    sam3=dict(max_prompts=max_prompts, max_boxes=max_boxes, max_points=max_points))
feats = dict(
    feat_s4=dict(min_shape=[1, 256, 288, 288], opt_shape=[1, 256, 288, 288],
                 max_shape=[1, 256, 288, 288]),
    feat_s8=dict(min_shape=[1, 256, 144, 144], opt_shape=[1, 256, 144, 144],
                 max_shape=[1, 256, 144, 144]),
    feat_s16=dict(min_shape=[1, 256, 72, 72], opt_shape=[1, 256, 72, 72],
                  max_shape=[1, 256, 72, 72]))
# The vision graph's tracker outputs: the coarse level + no_mem_embed (C channels) and the two
# finer levels already through conv_s0 / conv_s1 (C/8, C/4 channels).
tracker = dict(
    tracker_embed=dict(min_shape=[1, 256, 72, 72], opt_shape=[1, 256, 72, 72],
                       max_shape=[1, 256, 72, 72]),
    tracker_feat_s4=dict(min_shape=[1, 32, 288, 288], opt_shape=[1, 32, 288, 288],
                         max_shape=[1, 32, 288, 288]),
    tracker_feat_s8=dict(min_shape=[1, 64, 144, 144], opt_shape=[1, 64, 144, 144],
                         max_shape=[1, 64, 144, 144]))
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
        # interactive_decoder: optimised for two clicks (P = 3 with the padding point).
        dict(input_shapes=dict(
            **tracker,
            point_coords=dict(min_shape=[1, 1, 2], opt_shape=[1, 3, 2],
                              max_shape=[1, max_points, 2]),
            point_labels=dict(min_shape=[1, 1], opt_shape=[1, 3], max_shape=[1, max_points]),
            mask_input=dict(min_shape=[1, 1, 288, 288], opt_shape=[1, 1, 288, 288],
                            max_shape=[1, 1, 288, 288]),
            has_mask_input=dict(min_shape=[1], opt_shape=[1], max_shape=[1]))),
    ])
