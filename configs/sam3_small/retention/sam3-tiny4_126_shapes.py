# Retention experiment, student: 4 ViT blocks (global at 1 and 3 <- the teacher's 3 and 7) at
# 126 px (9 x 9 tokens, one padded window row / column), under half the teacher's image-tower
# FLOPs. Trained on ground truth only (from the compressed teacher, or from scratch) with this
# config; distilled with sam3-tiny4_126_shapes_distill.py.
_base_ = ['../../sam3/sam3_tiny_scratch_1xb2-5k_shapes.py']

input_size = 126
model = dict(backbone=dict(img_size=input_size, depth=4, global_att_blocks=(1, 3)))

# The teacher's recipe scaled to 126: square resize to 105..126, zero pad to 126.
train_scales = [(s, s) for s in range(105, input_size + 1, 7)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='FilterCrowds'),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=False),
    dict(type='RandomOffsetPad', size=input_size),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(0., 0.), keep_empty=False),
    dict(type='BuildPromptQueries'),
    dict(type='FilterPromptsWithTooManyTargets', max_num_targets=200),
    dict(type='PackSAM3Inputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
