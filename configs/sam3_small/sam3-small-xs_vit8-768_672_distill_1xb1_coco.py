# Distil SAM3-Small XS from the full SAM 3: the S recipe (data, schedule, losses, memory settings)
# with the XS student's sizes, and its compressed text encoder trained (lr 2e-5), not frozen.
#   1. python tools/model_converters/compress_sam3.py configs/sam3/sam3_vit-l_zeroshot_coco.py \
#          checkpoints/sam3_vit-l_mmsam3.pth \
#          configs/sam3_small/sam3-small-xs_vit8-768_672_zeroshot.py \
#          checkpoints/sam3-small-xs_init.pth
#   2. python tools/train.py configs/sam3_small/sam3-small-xs_vit8-768_672_distill_1xb1_coco.py
# The checkpoints written are plain student checkpoints: test or demo them with
# sam3-small-xs_vit8-768_672_zeroshot.py.
_base_ = ['./sam3-small-s_vit16_672_distill_1xb1_coco.py']

num_queries = 100
load_from = 'checkpoints/sam3-small-xs_init.pth'  # compress_sam3.py output

model = dict(
    match='auto',  # the student kept the teacher's first 100 queries: matched by index
    query_ids=list(range(num_queries)),
    frozen_modules=(),
    backbone=dict(depth=8, global_att_blocks=(1, 3, 5, 7), embed_dims=768, num_heads=12,
                  mlp_ratio=4.0),
    neck=dict(in_channels=768),
    text_encoder=dict(layers=12, mlp_ratio=2.0, with_cp=True),
    encoder=dict(num_layers=3, dim_feedforward=1024),
    decoder=dict(num_layers=3, dim_feedforward=1024, num_queries=num_queries),
    bbox_head=dict(
        criterion=dict(cls_loss=dict(type='SAM3IABCELoss', pad_n_queries=num_queries))))

optim_wrapper = dict(
    paramwise_cfg=dict(component_lr=dict(backbone=1e-4, neck=1e-4, text_encoder=2e-5)))
