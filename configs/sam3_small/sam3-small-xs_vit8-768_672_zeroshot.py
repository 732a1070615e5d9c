# SAM3-Small XS: 8 ViT blocks (global at 1/3/5/7 <- the teacher's 7/15/23/31), width 768 (12 of
# the 16 heads, head size 64 kept whole for RoPE), MLP 3072, 672 px; text encoder 12 of 24
# layers with MLP 2048; fusion encoder and decoder 3 of 6 layers with FFN 1024; 100 of the 200
# queries (the first 100: the distiller matches them by index, query_ids below).
#   python tools/model_converters/compress_sam3.py configs/sam3/sam3_vit-l_zeroshot_coco.py \
#       checkpoints/sam3_vit-l_mmsam3.pth \
#       configs/sam3_small/sam3-small-xs_vit8-768_672_zeroshot.py checkpoints/sam3-small-xs_init.pth
_base_ = ['../sam3/sam3_vit-l_zeroshot_coco.py']

input_size = 672
num_queries = 100
load_from = 'checkpoints/sam3-small-xs_distilled.pth'

model = dict(
    backbone=dict(img_size=input_size, depth=8, global_att_blocks=(1, 3, 5, 7), embed_dims=768,
                  num_heads=12, mlp_ratio=4.0),
    neck=dict(in_channels=768),
    text_encoder=dict(layers=12, mlp_ratio=2.0),
    encoder=dict(num_layers=3, dim_feedforward=1024),
    decoder=dict(num_layers=3, dim_feedforward=1024, num_queries=num_queries),
    bbox_head=dict(criterion=dict(cls_loss=dict(type='SAM3IABCELoss', pad_n_queries=num_queries))))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='TorchvisionResize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
