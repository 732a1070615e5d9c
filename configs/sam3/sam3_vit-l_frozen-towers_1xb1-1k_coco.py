# SAM 3 fine-tuning with the image (ViT) and text towers frozen: only the neck, geometry encoder,
# fusion encoder, decoder, scoring and mask heads train. Frozen parameters get
# requires_grad=False (no gradients, no optimizer state, no stored activations) and the towers
# stay in eval mode. Recipe otherwise official (lrs of the remaining groups, schedule, clipping,
# bf16). Add 'neck' to frozen_modules to also freeze the FPN convs.
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
    frozen_modules=('backbone', 'text_encoder'),
    # Towers run without a graph, so checkpointing is only useful in the trainable parts.
    backbone=dict(with_cp=False),
    text_encoder=dict(with_cp=False),
    geometry_encoder=dict(with_cp=True),
    encoder=dict(with_cp=True),
    decoder=dict(with_cp=True),
    bbox_head=dict(mask_head=dict(with_cp=True)))

optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic')
