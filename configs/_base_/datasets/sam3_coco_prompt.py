# SAM 3 prompt-based detection / segmentation on a COCO-format dataset (mmdet layout).
#
# One item = one image with all its instances; BuildPromptQueries turns its categories into text
# prompts (positives = categories present, negatives = `num_negative_prompts` absent categories,
# -1 = all; every category in val/test). Train pipeline = official SAM 3 fine-tuning pipeline:
# crowd filter -> square resize to s x s, s in {480, 512, ..., 992} (aspect NOT kept) -> zero pad
# to input_size x input_size at a random offset -> degenerate-box filter -> prompts -> drop
# prompts with > 200 targets. Val/test: square resize to input_size, every category prompted.
#
# Normalisation lives in the model's data preprocessor (official mean = std = 0.5 on [0, 1]):
#   data_preprocessor = dict(
#       type='DetDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
#       bgr_to_rgb=True, pad_size_divisor=1, boxtype2tensor=True)
# Small variants: set input_size to 504 / 672 (any multiple of 14) and train_scales accordingly
# (mmengine evaluates this file once: a child config overriding input_size must also override
# train_scales, the pipelines and the RandomOffsetPad size).
dataset_type = 'SAM3PromptCocoDataset'
data_root = 'data/coco/'
train_ann_file = 'annotations/instances_train2017.json'
train_img_prefix = 'train2017/'
val_ann_file = 'annotations/instances_val2017.json'
val_img_prefix = 'val2017/'
test_ann_file = val_ann_file
test_img_prefix = val_img_prefix

input_size = 1008
min_train_size = 480
# official get_random_resize_scales(1008, min_size=480): 480, 512, ..., 992
train_scales = [(s, s) for s in range((min_train_size + 31) // 32 * 32, input_size + 1, 32)]
num_negative_prompts = -1  # -1: every absent category is a negative prompt (official)
max_targets_per_prompt = 200
with_mask = True  # box-only data: set False (and use metric=['bbox'])
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask, poly2mask=True),
    dict(type='FilterCrowds'),
    dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=False),
    dict(type='RandomOffsetPad', size=input_size),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(0., 0.), keep_empty=False),
    dict(type='BuildPromptQueries'),
    dict(type='FilterPromptsWithTooManyTargets', max_num_targets=max_targets_per_prompt),
    dict(type='PackSAM3Inputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    # torchvision's uint8 bilinear + antialias resize, as Meta's Sam3Processor (not cv2)
    dict(type='TorchvisionResize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]

train_dataloader = dict(
    batch_size=1,  # official: 1 image per GPU, all its prompts
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=train_ann_file,
        data_prefix=dict(img=train_img_prefix),
        num_negative_prompts=num_negative_prompts,
        filter_cfg=dict(filter_empty_gt=False),  # negative-only images are kept (official)
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=val_ann_file,
        data_prefix=dict(img=val_img_prefix),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=test_ann_file,
        data_prefix=dict(img=test_img_prefix),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + val_ann_file,
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + test_ann_file,
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
