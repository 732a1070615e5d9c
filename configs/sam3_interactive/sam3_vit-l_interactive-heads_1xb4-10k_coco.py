# SAM 3 (full size) interactive heads fine-tuned on COCO instance masks with SAM's prompt
# simulation: towers frozen (ViT, and the idle concept parts), the tracker neck and the SAM
# prompt encoder / mask decoder train. SAM's 11 iterations per step: the first prompt (a point
# or a noisy box, equal odds), 8 correction clicks, 2 rounds without a click.
#   python tools/model_converters/sam3_to_mmsam3.py sam3.pt checkpoints/sam3_vit-l_mmsam3.pth
#   python tools/train.py configs/sam3_interactive/sam3_vit-l_interactive-heads_1xb4-10k_coco.py
#   python tools/test.py configs/sam3_interactive/sam3_vit-l_interactive-heads_1xb4-10k_coco.py \
#       checkpoints/sam3_vit-l_mmsam3.pth        # Meta's weights in clicks: mIoU@k, NoC@85/90
# Options: LoRA on the ViT: sam3_vit-l_interactive-lora_1xb4-10k_coco.py; the whole ViT:
#   --cfg-options "model.frozen_modules=['neck','text_encoder','geometry_encoder','encoder','decoder','bbox_head']"
_base_ = [
    '../_base_/models/sam3_vit-l_interactive.py',
    '../_base_/datasets/coco_interactive.py',
    '../_base_/default_runtime.py',
]

load_from = 'checkpoints/sam3_vit-l_mmsam3.pth'

model = dict(
    type='SAM3Interactive',
    backbone=dict(with_cp=False),   # frozen: no graph, nothing to checkpoint
    prompt_sampler=dict(type='InteractivePromptSampler', prob_box=0.5, box_noise_std=0.1,
                        box_noise_max=20.0, max_objects=16),
    interactive_loss=dict(type='SAMInteractiveLoss', focal_weight=20.0, dice_weight=1.0,
                          iou_weight=1.0, object_weight=1.0, iou_loss='l1'),
    num_correction_rounds=8,
    num_no_click_rounds=2,
    num_clicks=20)

max_iters = 10000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-5, weight_decay=0.1),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=250),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, eta_min_ratio=0.1),
]
default_hooks = dict(checkpoint=dict(interval=2500, max_keep_ckpts=2,
                                     save_best='click/NoC@85', rule='less'))
custom_hooks = [dict(type='TrainingHealthHook', max_consecutive_bad=5, on_repeated='rollback')]
