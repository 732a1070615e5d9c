# As sam3_vit-l_interactive-heads_1xb4-10k_coco.py, plus LoRA adapters (peft) on the ViT's
# attention / MLP projections: the ViT's base weights stay frozen, its adapters, the tracker
# neck and the interactive heads train.
_base_ = ['./sam3_vit-l_interactive-heads_1xb4-10k_coco.py']

model = dict(
    frozen_modules=('neck', 'text_encoder', 'geometry_encoder', 'encoder', 'decoder',
                    'bbox_head'),
    backbone=dict(with_cp=True),
    lora=dict(r=16, lora_alpha=32, lora_dropout=0.05, towers=dict(text_encoder=None)))

optim_wrapper = dict(paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=20.0))))
