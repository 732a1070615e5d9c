# The tiny SAM 3 trained from scratch on the synthetic shapes dataset (CPU friendly).
#   python tools/dataset_converters/make_shapes_dataset.py data/shapes --train 800 --val 40 \
#       --size 168 --radius 0.15 0.25 --preset distinct
#   python tools/train.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py
#   python tools/analysis_tools/learning_check.py    # the whole check, with a plot
# The tokenizer needs the CLIP BPE vocabulary: set bpe_path (or --cfg-options
# model.tokenizer.bpe_path=...).
_base_ = [
    '../_base_/models/sam3_tiny.py',
    '../_base_/datasets/sam3_shapes.py',
    '../_base_/default_runtime.py',
]

bpe_path = '../shared/data/bpe_simple_vocab_16e6.txt.gz'

# From scratch on a CPU: no dropout / drop path (the official 0.1 is for fine-tuning).
model = dict(
    tokenizer=dict(bpe_path=bpe_path),
    backbone=dict(drop_path_rate=0.0),
    geometry_encoder=dict(dropout=0.0),
    encoder=dict(dropout=0.0),
    decoder=dict(dropout=0.0),
    bbox_head=dict(scoring_head=dict(dropout=0.0)))

max_iters = 5000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, eta_min_ratio=0.05),
]
default_hooks = dict(
    checkpoint=dict(interval=1000, max_keep_ckpts=2, save_best='coco/bbox_mAP_50',
                    rule='greater'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
find_unused_parameters = True
# Non-finite loss / gradient: skip the step; after 5 in a row roll back to the last checkpoint.
custom_hooks = [dict(type='TrainingHealthHook', max_consecutive_bad=5, on_repeated='rollback')]
