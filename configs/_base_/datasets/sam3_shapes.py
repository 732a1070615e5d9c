# The synthetic shapes dataset (COCO format, Roboflow layout) for CPU-sized SAM 3 experiments:
#   python tools/dataset_converters/make_shapes_dataset.py data/shapes --train 800 --val 40 \
#       --size 168 --radius 0.15 0.25 --preset distinct
# Every category is a prompt on every image: present ones are positives, absent ones negatives
# (official `-1`). Train: the official recipe scaled down (square resize to 140..168, zero pad
# to 168 at a random offset); val / test: resize to 168, every category prompted.
dataset_type = 'SAM3PromptCocoDataset'
data_root = 'data/shapes/'
input_size = 168
train_scales = [(s, s) for s in range(140, input_size + 1, 14)]

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
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 num_negative_prompts=-1,
                 filter_cfg=dict(filter_empty_gt=False),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='valid', test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'valid/_annotations.coco.json',
         metric=['bbox', 'segm']),
    dict(type='CgF1Metric', ann_file=data_root + 'valid/_annotations.coco.json',
         iou_type=['bbox', 'segm']),
]
test_evaluator = val_evaluator
