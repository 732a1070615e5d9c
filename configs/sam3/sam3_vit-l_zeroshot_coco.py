# SAM 3 (official weights, converted) for zero-shot inference and evaluation at 1008.
#   python tools/model_converters/sam3_to_mmsam3.py sam3.pt checkpoints/sam3_vit-l_mmsam3.pth
#   python tools/test.py configs/sam3/sam3_vit-l_zeroshot_coco.py checkpoints/sam3_vit-l_mmsam3.pth
#   python tools/demo.py demo.jpg configs/sam3/sam3_vit-l_zeroshot_coco.py \
#       --weights checkpoints/sam3_vit-l_mmsam3.pth --texts "fish" "shark"
_base_ = [
    '../_base_/models/sam3_vit-l.py',
    '../_base_/datasets/sam3_coco_prompt.py',
    '../_base_/default_runtime.py',
]

load_from = 'checkpoints/sam3_vit-l_mmsam3.pth'

# Official evaluation keeps every query of every prompt and the top 100 per image.
model = dict(test_cfg=dict(score_thr=0.0, max_per_img=100))

val_evaluator = [
    dict(type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json',
         metric=['bbox', 'segm'], format_only=False),
    dict(type='CgF1Metric', ann_file='data/coco/annotations/instances_val2017.json',
         iou_type=['bbox', 'segm']),
]
test_evaluator = val_evaluator
