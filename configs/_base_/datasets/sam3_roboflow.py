# SAM 3 prompt-based fine-tuning on a Roboflow / RF100-VL dataset (also ODinW, see below).
#
# Layout: <data_root>/{train,valid,test}/_annotations.coco.json with the images next to each json.
# `split=` on the dataset resolves ann_file and the image prefix. Pipelines are the official SAM 3
# ones (see sam3_coco_prompt.py for the details and the data_preprocessor snippet:
# DetDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)).
#
# Roboflow's supercategory-only category id 0 (no annotations) is kept, as the official RF100-VL
# configs do: a negative prompt on every training image; COCOeval ignores it (no ground truth).
# Set drop_unused_supercategory=True in the datasets to drop it instead.
# Official RF100-VL fine-tuning uses 100 random training images (num_images=100) and evaluates
# on test/; set val_split = 'test' for that protocol.
# ODinW: ann_name='fewshot_train_shot10_seed300.json' (train) /
# 'annotations_without_background.json' (test), and prompt_map=<the official odinw35_prompts
# entry> for the sets that override phrases.
dataset_type = 'SAM3PromptCocoDataset'
data_root = 'data/roboflow/my-dataset/'
train_split = 'train'
val_split = 'valid'
test_split = 'test'
ann_name = '_annotations.coco.json'
num_train_images = None  # official RF100-VL: 100

input_size = 1008
min_train_size = 480
train_scales = [(s, s) for s in range((min_train_size + 31) // 32 * 32, input_size + 1, 32)]
num_negative_prompts = -1
max_targets_per_prompt = 200
with_mask = False  # RF100-VL fine-tuning is box-only; set True when the jsons have masks
val_metric = ['bbox']  # ['bbox', 'segm'] with masks
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
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split=train_split,
        ann_name=ann_name,
        num_images=num_train_images,
        num_negative_prompts=num_negative_prompts,
        filter_cfg=dict(filter_empty_gt=False),
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
        split=val_split,
        ann_name=ann_name,
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
        split=test_split,
        ann_name=ann_name,
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + val_split + '/' + ann_name,
    metric=val_metric,
    format_only=False,
    backend_args=backend_args)
test_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + test_split + '/' + ann_name,
    metric=val_metric,
    format_only=False,
    backend_args=backend_args)
