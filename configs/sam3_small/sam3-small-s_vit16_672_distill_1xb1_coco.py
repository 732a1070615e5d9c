# Distil SAM3-Small S from the full SAM 3 (COCO-format data, labeled and / or unlabeled).
#   1. python tools/model_converters/compress_sam3.py configs/sam3/sam3_vit-l_zeroshot_coco.py \
#          checkpoints/sam3_vit-l_mmsam3.pth \
#          configs/sam3_small/sam3-small-s_vit16_672_zeroshot.py checkpoints/sam3-small-s_init.pth
#   2. python tools/train.py configs/sam3_small/sam3-small-s_vit16_672_distill_1xb1_coco.py
# The checkpoints written are plain student checkpoints (the teacher is not part of them): test
# or demo them with sam3-small-s_vit16_672_zeroshot.py.
# Loss = task losses where ground truth exists + neck-feature + decoder-output terms against the
# teacher (SAM3DistillLoss). Memory: bf16 autocast, activation checkpointing in every stack, the
# teacher stored in bf16, the (uncompressed) text encoder frozen; batch 1.
_base_ = [
    '../_base_/models/sam3_vit-l.py',
    '../_base_/datasets/sam3_coco_prompt.py',
    '../_base_/schedules/sam3_finetune.py',
    '../_base_/default_runtime.py',
]

input_size = 672
teacher_config = 'configs/sam3/sam3_vit-l_zeroshot_coco.py'
teacher_ckpt = 'checkpoints/sam3_vit-l_mmsam3.pth'
load_from = 'checkpoints/sam3-small-s_init.pth'  # compress_sam3.py output

model = dict(
    type='SAM3Distiller',
    teacher_config=teacher_config,
    teacher_ckpt=teacher_ckpt,
    teacher_input_size=1008,  # the teacher sees its native resolution
    teacher_dtype='bfloat16',
    task_weight=1.0,
    match='auto',  # same 200 queries as the teacher: matched by index
    distill_loss=dict(type='SAM3DistillLoss', feat_mse_weight=1.0, feat_cos_weight=1.0,
                      logit_weight=2.0, presence_weight=1.0, box_l1_weight=5.0,
                      box_giou_weight=2.0, mask_bce_weight=1.0, mask_dice_weight=1.0,
                      mask_topk=16),
    frozen_modules=('text_encoder', ),
    backbone=dict(img_size=input_size, depth=16, global_att_blocks=(3, 7, 11, 15), with_cp=True,
                  drop_path_rate=0.0),
    geometry_encoder=dict(with_cp=True),
    encoder=dict(with_cp=True),
    decoder=dict(with_cp=True),
    bbox_head=dict(mask_head=dict(with_cp=True)))

train_scales = [(s, s) for s in range(320, input_size + 1, 32)]
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
# Unlabeled images (a COCO json with images and categories, no annotations): every category
# name is a prompt and the teacher's outputs are the only targets. Concatenate with the labeled
# set, e.g. train_dataloader.dataset = dict(type='ConcatDataset', datasets=[labeled, unlabeled]).
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=False),
    dict(type='RandomOffsetPad', size=input_size),
    dict(type='MarkUnlabeled'),
    dict(type='BuildPromptQueries', prompt_all_classes=True),
    dict(type='PackSAM3Inputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='TorchvisionResize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 20000
train_cfg = dict(max_iters=max_iters, val_interval=5000)
default_hooks = dict(checkpoint=dict(interval=1000, max_keep_ckpts=2))
# The student relearns what it lost: the official fine-tuning lrs x 4, no layer decay across the
# shortened ViT.
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic',
    optimizer=dict(lr=3.2e-4),
    paramwise_cfg=dict(component_lr=dict(backbone=1e-4, neck=1e-4),
                       layer_decay=dict(rate=1.0)),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='InverseSquareRootLR', warmup_steps=500, cooldown_steps=1000, timescale=500,
         begin=0, end=max_iters, by_epoch=False)
]
