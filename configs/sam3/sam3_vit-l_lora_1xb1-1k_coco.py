# SAM 3 fine-tuning with LoRA adapters (peft) on the attention and MLP projections of the ViT
# (qkv, proj, fc1, fc2) and of the text encoder (fused in_proj_weight, out_proj, c_fc, c_proj);
# the towers' base weights are frozen, neck / encoders / decoder / heads train fully.
# The converted official checkpoint loads into the LoRA model (plain names are mapped to peft's
# `base_layer` names); saved checkpoints hold base + adapter weights.
# Adapters learn at the "transformer" lr (8e-5 x layer decay in the ViT; component_lr below).
_base_ = [
    '../_base_/models/sam3_vit-l.py',
    '../_base_/datasets/sam3_coco_prompt.py',
    '../_base_/schedules/sam3_finetune.py',
    '../_base_/default_runtime.py',
]

load_from = 'checkpoints/sam3_vit-l_mmsam3.pth'
# Frequent checkpoints: TrainingHealthHook rolls back to the latest one on divergence.
default_hooks = dict(checkpoint=dict(interval=250, max_keep_ckpts=2))

model = dict(
    lora=dict(r=16, lora_alpha=32, lora_dropout=0.05),
    backbone=dict(with_cp=True),
    text_encoder=dict(with_cp=True),
    geometry_encoder=dict(with_cp=True),
    encoder=dict(with_cp=True),
    decoder=dict(with_cp=True),
    bbox_head=dict(mask_head=dict(with_cp=True)))

# LoRA matrices start at B = 0 and need a larger lr than the official full-fine-tune tower lrs.
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic',
    paramwise_cfg=dict(component_lr=dict(backbone=2e-4, neck=2.5e-5, text_encoder=2e-4)))
