# The tiny SAM 3 trained from scratch on the synthetic shapes dataset (CPU friendly).
#   python tools/dataset_converters/make_shapes_dataset.py data/shapes --train 800 --val 40 \
#       --size 168 --radius 0.15 0.25 --preset distinct
#   python tools/train.py configs/sam3_tiny_shapes.py
#   python tools/analysis_tools/learning_check.py    # the whole check, with a plot
# The tokenizer needs the CLIP BPE vocabulary: set bpe_path (or --cfg-options
# model.tokenizer.bpe_path=...).
_base_ = [
    './_base_/models/sam3_tiny.py',
    './_base_/default_runtime.py',
]

data_root = 'data/shapes/'
input_size = 168
# Square resize to a random size, then zero-pad to the input size at a random offset (the
# official recipe scaled down: 480..992 of 1008 there, 140..168 of 168 here).
train_scales = [(s, s) for s in range(140, input_size + 1, 14)]
bpe_path = '../shared/data/bpe_simple_vocab_16e6.txt.gz'

# From scratch on a CPU: no dropout / drop path (the official 0.1 is for fine-tuning).
model = dict(
    tokenizer=dict(bpe_path=bpe_path),
    backbone=dict(img_size=input_size, drop_path_rate=0.0),
    geometry_encoder=dict(dropout=0.0),
    encoder=dict(dropout=0.0),
    decoder=dict(dropout=0.0),
    bbox_head=dict(scoring_head=dict(dropout=0.0)),
    test_cfg=dict(score_thr=0.0, max_per_img=100))

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
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='SAM3PromptCocoDataset', data_root=data_root, split='train',
                 # every absent category is a negative prompt, as in the official recipe
                 num_negative_prompts=-1,
                 filter_cfg=dict(filter_empty_gt=False),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SAM3PromptCocoDataset', data_root=data_root, split='valid',
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'valid/_annotations.coco.json',
         metric=['bbox', 'segm']),
    dict(type='CgF1Metric', ann_file=data_root + 'valid/_annotations.coco.json',
         iou_type=['bbox', 'segm']),
]
test_evaluator = val_evaluator

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
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=1000, by_epoch=False, max_keep_ckpts=2,
                    save_best='coco/bbox_mAP_50', rule='greater'))
log_processor = dict(window_size=50)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
find_unused_parameters = True
# Non-finite loss / gradient: skip the step; after 5 in a row roll back to the last checkpoint.
custom_hooks = [dict(type='TrainingHealthHook', max_consecutive_bad=5, on_repeated='rollback')]
