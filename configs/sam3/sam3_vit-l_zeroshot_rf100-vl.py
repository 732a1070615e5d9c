# SAM 3 (ViT-L, 1008) zero-shot box AP on RF100-VL, as the SAM 3 paper reports it: COCO AP on each
# of the 100 datasets and the mean over them.
#
#   python tools/test.py configs/sam3/sam3_vit-l_zeroshot_rf100-vl.py \
#       checkpoints/sam3_vit-l_mmsam3.pth
#   RF100VL_DATA_ROOT=/data/rf100-vl/ python tools/test.py ...   (or edit data_root below)
#
# Prints `<dataset>/coco/bbox_mAP` for every dataset, `mean/coco/bbox_mAP` and a per-dataset
# markdown table. For a fine-tuned model of one dataset, evaluate that dataset with
# configs/_base_/datasets/sam3_roboflow.py (val_split='test'); a subset of the benchmark: trim
# `rf100_vl_datasets` in a child config and rebuild `test_datasets` / `test_metrics` (or use
# `--cfg-options` on single entries).
#
# Protocol (official sam3/train/configs/roboflow_v100/roboflow_v100_eval.yaml):
# - the 100 datasets below, in the official order, Roboflow layout
#   <data_root>/<dataset>/test/_annotations.coco.json with the images next to it;
# - the json is used unchanged: Roboflow's supercategory-only category (id 0, no annotation) is
#   prompted too and COCOeval ignores it (no ground truth); every category of the dataset is a
#   text prompt on every image (each sub-dataset prompts only its own classes);
# - square resize to 1008; presence-weighted scores, top 100 detections per image (official
#   `maxdets: 100`);
# - bbox AP (pycocotools COCOeval, mmdet CocoMetric) per dataset; the mean is the plain mean over
#   the datasets.
_base_ = [
    '../_base_/models/sam3_vit-l.py',
    '../_base_/default_runtime.py',
]

data_root = '{{$RF100VL_DATA_ROOT:data/rf100-vl/}}'
split = 'test'
ann_name = '_annotations.coco.json'
input_size = 1008
backend_args = None
load_from = 'checkpoints/sam3_vit-l_mmsam3.pth'

# Official evaluation keeps every query of every prompt and the top 100 per image.
model = dict(test_cfg=dict(score_thr=0.0, max_per_img=100))

# The 100 RF100-VL datasets (official `all_roboflow_supercategories`, same order).
rf100_vl_datasets = [
    '-grccs', 'zebrasatasturias', 'cod-mw-warzone', 'canalstenosis',
    'label-printing-defect-version-2', 'new-defects-in-wood', 'orionproducts',
    'aquarium-combined', 'varroa-mites-detection--test-set', 'clashroyalechardetector',
    'stomata-cells', 'halo-infinite-angel-videogame', 'pig-detection', 'urine-analysis1',
    'aerial-sheep', 'orgharvest', 'actions', 'mahjong', 'liver-disease',
    'needle-base-tip-min-max', 'wheel-defect-detection', 'aircraft-turnaround-dataset', 'xray',
    'wildfire-smoke', 'spinefrxnormalvindr', 'ufba-425', 'speech-bubbles-detection', 'train',
    'pill', 'truck-movement', 'car-logo-detection', 'inbreast', 'sea-cucumbers-new-tiles',
    'uavdet-small', 'penguin-finder-seg', 'aerial-airport', 'bibdetection',
    'taco-trash-annotations-in-context', 'bees', 'recode-waste', 'screwdetectclassification',
    'wine-labels', 'aerial-cows', 'into-the-vale', 'gwhd2021', 'lacrosse-object-detection',
    'defect-detection', 'dataconvert', 'x-ray-id', 'ball', 'tube', '2024-frc',
    'crystal-clean-brain-tumors-mri-dataset', 'grapes-5', 'human-detection-in-floods',
    'buoy-onboarding',
    'apoce-aerial-photographs-for-object-detection-of-construction-equipment', 'l10ul502',
    'floating-waste', 'deeppcb', 'ism-band-packet-detection', 'weeds4', 'invoice-processing',
    'thermal-cheetah', 'tomatoes-2', 'marine-sharks', 'peixos-fish', 'sssod', 'aerial-pool',
    'countingpills', 'asphaltdistressdetection', 'roboflow-trained-dataset', 'everdaynew',
    'underwater-objects', 'soda-bottles', 'dentalai', 'jellyfish', 'deepfruits',
    'activity-diagrams', 'circuit-voltages', 'all-elements', 'macro-segmentation',
    'exploratorium-daphnia', 'signatures', 'conveyor-t-shirts', 'fruitjes', 'grass-weeds',
    'infraredimageofpowerequipment', '13-lkc01', 'wb-prova', 'flir-camera-objects',
    'paper-parts', 'football-player-detection', 'trail-camera', 'smd-components', 'water-meter',
    'nih-xray', 'the-dreidel-project', 'electric-pylon-detection-in-rsi', 'cable-damage'
]
assert len(rf100_vl_datasets) == 100

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
        data_root=data_root + name + '/',
        split=split,
        ann_name=ann_name,
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args) for name in rf100_vl_datasets
]
test_metrics = [
    dict(
        type='SAM3CocoMetric',  # mmdet CocoMetric + checks of the predictions
        ann_file=data_root + name + '/' + split + '/' + ann_name,
        metric='bbox',
        backend_args=backend_args) for name in rf100_vl_datasets
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
    dataset_prefixes=list(rf100_vl_datasets))
test_cfg = dict(type='TestLoop')

val_dataloader = test_dataloader
val_evaluator = test_evaluator
val_cfg = dict(type='ValLoop')
