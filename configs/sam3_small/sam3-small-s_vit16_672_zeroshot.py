# SAM3-Small S: 16 of the 32 ViT blocks (the 4 global blocks kept, at 3/7/11/15), full width,
# 672 px input (28 x 28 windows of 24 tokens after padding), every other part as the teacher.
#   python tools/model_converters/compress_sam3.py configs/sam3/sam3_vit-l_zeroshot_coco.py \
#       checkpoints/sam3_vit-l_mmsam3.pth configs/sam3_small/sam3-small-s_vit16_672_zeroshot.py \
#       checkpoints/sam3-small-s_init.pth [--calib-images DIR --rank-blocks]
#   python tools/demo.py demo.jpg configs/sam3_small/sam3-small-s_vit16_672_zeroshot.py \
#       --weights work_dirs/.../iter_N.pth --texts "fish"
_base_ = ['../sam3/sam3_vit-l_zeroshot_coco.py']

input_size = 672
load_from = 'checkpoints/sam3-small-s_distilled.pth'

model = dict(backbone=dict(img_size=input_size, depth=16, global_att_blocks=(3, 7, 11, 15)))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='TorchvisionResize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
