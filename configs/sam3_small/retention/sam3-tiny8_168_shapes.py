# Retention experiment, teacher: the tiny SAM 3 with twice the student's ViT depth (8 blocks,
# global attention at 3 and 7), trained from scratch on the synthetic shapes at 168 px.
# Run by tools/analysis_tools/retention_check.py.
_base_ = ['../../sam3/sam3_tiny_scratch_1xb2-5k_shapes.py']

model = dict(backbone=dict(depth=8, global_att_blocks=(3, 7)))
