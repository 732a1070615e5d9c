# Official SAM 3 fine-tuning recipe (RF100-VL full fine-tune / ODinW13 train; spec section 4.5):
# AdamW, per-component lrs (ViT + neck 2.5e-5, text encoder 5e-6, the rest 8e-5), layer-wise lr
# decay 0.9 over the ViT blocks (pos_embed exempt), weight decay 0.1 except `*bias*` and
# nn.LayerNorm parameters, grad-norm clipping at 0.1, inverse-sqrt lr with 20-iter warm-up,
# cool-down and timescale, stepped every iteration, bf16 autocast.
#
# Official run: 100 images, 2 GPUs x 1 image -> 50 iters/epoch, 20 epochs = 1000 iterations;
# val every 10 epochs (first skipped). With 1 GPU keep max_iters = 1000 (or set
# optim_wrapper.accumulative_counts=2 and max_iters=2000 for the same effective batch of 2).
max_iters = 1000
val_interval = 500

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# fp32 OptimWrapper here; the official run autocasts to bf16, which the experiment configs turn
# on with `optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic')`
# (needs CUDA; the GradScaler is created as in the official trainer, harmless for bf16).
# `tools/train.py --amp` on an fp32 config gives AmpOptimWrapper with fp16 autocast instead.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='SAM3OptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=8e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
    paramwise_cfg=dict(
        component_lr=dict(backbone=2.5e-5, neck=2.5e-5, text_encoder=5e-6),
        layer_decay=dict(module='backbone', rate=0.9,
                         overrides=[dict(pattern='*pos_embed*', value=1.0)]),
        no_decay_names=['*bias*'],
        no_decay_norm_types=['LayerNorm'],
        skip_frozen=True),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    accumulative_counts=1)

param_scheduler = [
    dict(type='InverseSquareRootLR', warmup_steps=20, cooldown_steps=20, timescale=20,
         begin=0, end=max_iters, by_epoch=False)
]

# Non-finite loss / gradient guard: skips bad steps, rolls back to the last checkpoint after 5
# in a row (lr x 0.5), refuses to save non-finite weights. The official trainer raises instead.
custom_hooks = [
    dict(type='TrainingHealthHook', max_consecutive_bad=5, on_repeated='rollback',
         lr_factor=0.5, max_rollbacks=3)
]

# Checkpoints: default_runtime saves every 1000 iters; experiments save more often so that the
# health hook has a recent good checkpoint to roll back to.

# DDP: the official trainer needs find_unused_parameters=True (idle heads / box-exemplar paths).
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

randomness = dict(seed=123)
auto_scale_lr = dict(enable=False, base_batch_size=2)
