# Fine-tune a distilled SAM3-Small XS (8 ViT blocks of width 768 at 672 px) on COCO-format data
# with the official recipe (per-component lrs, layer decay, inverse-sqrt schedule, bf16) and the
# text encoder frozen; activation checkpointing in every trainable stack. The memory of one step
# is estimated and measured on CPU by `tools/analysis_tools/train_memory.py --compare`
# (docs/training_memory.md).
_base_ = [
    './sam3-small-xs_vit8-768_672_zeroshot.py',
    '../_base_/schedules/sam3_finetune.py',
]

input_size = 672
load_from = 'checkpoints/sam3-small-xs_distilled.pth'
default_hooks = dict(checkpoint=dict(interval=250, max_keep_ckpts=2))

model = dict(
    frozen_modules=('text_encoder', ),
    backbone=dict(with_cp=True),
    geometry_encoder=dict(with_cp=True),
    encoder=dict(with_cp=True),
    decoder=dict(with_cp=True),
    bbox_head=dict(mask_head=dict(with_cp=True)))

optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic')

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
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))
