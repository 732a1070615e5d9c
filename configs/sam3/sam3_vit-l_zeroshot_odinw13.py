# SAM 3 (ViT-L, 1008) zero-shot box AP on ODinW13, as the SAM 3 paper reports it: COCO AP on each
# of the 13 datasets and the mean over them.
#
#   python tools/test.py configs/sam3/sam3_vit-l_zeroshot_odinw13.py \
#       checkpoints/sam3_vit-l_mmsam3.pth
#   ODINW13_DATA_ROOT=/data/odinw/ python tools/test.py ...   (or edit data_root below)
#
# Prints `<dataset>/coco/bbox_mAP` for every dataset, `mean/coco/bbox_mAP` (the number of the
# paper's ODinW13 column, x100) and a per-dataset markdown table. `--out results.pkl` dumps the
# predictions with their dataset name (tools/analysis_tools/results_to_tables.py, pr_curve.py).
#
# Protocol (official sam3/train/configs/odinw13/odinw_text_only.yaml):
# - the 13 datasets and splits below (test/ except PascalVOC valid/ and pistols export/),
#   json `annotations_without_background.json`;
# - every category of a dataset is a text prompt on every image (its own classes: each
#   sub-dataset prompts only its categories); the official `odinw35_prompts` phrase overrides
#   (AerialMaritimeDrone: jetski -> "jet ski", lift -> "boat lift"; NorthAmericaMushrooms:
#   CoW -> "chicken of wood") are given here by category *name* so they stay right whether the
#   json's ids start at 0 or 1 (the official loader re-indexes 0-based jsons to start at 1);
# - square resize to 1008, no padding; presence-weighted scores, top 100 detections per image
#   (official `maxdets: 100`; mmdet's CocoMetric then reports AP at its largest maxDets, which
#   is the same when there are at most 100 detections per image);
# - bbox AP from pycocotools COCOeval over all images and categories of the json (mmdet
#   CocoMetric); the mean is the plain mean over the 13 datasets.
#
# Data layout (GLIP / ODinW download): <data_root>/<dataset folder>/<split>/... as listed below.
_base_ = [
    '../_base_/models/sam3_vit-l.py',
    '../_base_/default_runtime.py',
]

data_root = '{{$ODINW13_DATA_ROOT:data/odinw/}}'
ann_name = 'annotations_without_background.json'
input_size = 1008
backend_args = None
load_from = 'checkpoints/sam3_vit-l_mmsam3.pth'

# Official evaluation keeps every query of every prompt and the top 100 per image.
model = dict(test_cfg=dict(score_thr=0.0, max_per_img=100))

# name (metric key prefix), folder under data_root, split folder, json name, prompt overrides
odinw13_datasets = [
    dict(name='AerialMaritimeDrone_large', folder='AerialMaritimeDrone/large/', split='test',
         prompt_map={'jetski': 'jet ski', 'lift': 'boat lift'}),
    dict(name='Aquarium', folder='Aquarium/Aquarium Combined.v2-raw-1024.coco/', split='test'),
    dict(name='CottontailRabbits', folder='CottontailRabbits/', split='test'),
    dict(name='EgoHands_generic', folder='EgoHands/generic/', split='test'),
    dict(name='NorthAmericaMushrooms',
         folder='NorthAmericaMushrooms/North American Mushrooms.v1-416x416.coco/', split='test',
         prompt_map={'CoW': 'chicken of wood'}),
    dict(name='Packages', folder='Packages/Raw/', split='test'),
    dict(name='PascalVOC', folder='PascalVOC/', split='valid'),
    dict(name='Raccoon', folder='Raccoon/Raccoon.v2-raw.coco/', split='test'),
    dict(name='ShellfishOpenImages', folder='ShellfishOpenImages/raw/', split='test'),
    dict(name='VehiclesOpenImages', folder='VehiclesOpenImages/416x416/', split='test'),
    dict(name='pistols', folder='pistols/', split='export',
         ann_name='test_annotations_without_background.json'),
    dict(name='pothole', folder='pothole/', split='test'),
    dict(name='thermalDogsAndPeople', folder='thermalDogsAndPeople/', split='test'),
]

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    # torchvision's uint8 bilinear + antialias resize, as Meta's Sam3Processor (not cv2)
    dict(type='TorchvisionResize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='BuildPromptQueries'),
    dict(type='PackSAM3Inputs'),
]

test_datasets = [
    dict(
        type='SAM3PromptCocoDataset',
        data_root=data_root + d['folder'],
        split=d['split'],
        ann_name=d.get('ann_name', ann_name),
        prompt_map=d.get('prompt_map'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args) for d in odinw13_datasets
]
test_metrics = [
    dict(
        type='SAM3CocoMetric',  # mmdet CocoMetric + checks of the predictions
        ann_file=data_root + d['folder'] + d['split'] + '/' + d.get('ann_name', ann_name),
        metric='bbox',
        backend_args=backend_args) for d in odinw13_datasets
]

test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    # MultiDatasetMeanEvaluator routes samples by their order: keep shuffle=False.
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=test_datasets))
test_evaluator = dict(
    type='MultiDatasetMeanEvaluator',
    metrics=test_metrics,
    dataset_prefixes=[d['name'] for d in odinw13_datasets])
test_cfg = dict(type='TestLoop')

val_dataloader = test_dataloader
val_evaluator = test_evaluator
val_cfg = dict(type='ValLoop')
