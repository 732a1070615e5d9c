# The tiny SAM 3 trained from scratch for clicks / boxes on the synthetic shapes (CPU sized):
# ViT + tracker neck + SAM prompt encoder / mask decoder train; the concept parts are idle.
#   python tools/dataset_converters/make_shapes_dataset.py data/shapes --train 800 --val 40 \
#       --size 168 --radius 0.15 0.25 --preset distinct
#   python tools/train.py configs/sam3_interactive/sam3_tiny-interactive_scratch_1xb4-5k_shapes.py
#   python tools/test.py configs/sam3_interactive/sam3_tiny-interactive_scratch_1xb4-5k_shapes.py \
#       work_dirs/.../iter_5000.pth          # prints click/mIoU@k, NoC@85, NoC@90, NoF@...
#   python tools/analysis_tools/interactive_learning_check.py   # untrained vs trained, CPU min
_base_ = [
    '../_base_/models/sam3_tiny_interactive.py',
    '../_base_/datasets/sam3_shapes_interactive.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='SAM3Interactive',
    # From scratch: the ViT trains with the tracker neck and the head (no drop path).
    backbone=dict(drop_path_rate=0.0),
    # SAM 1's LayerNorm at the end of the tracker neck: from scratch the image embedding
    # otherwise grows ~100x while the decoder's position encoding stays fixed, and the click
    # (placed only through that encoding) is ignored for thousands of iterations.
    tracker_neck=dict(out_norm=True),
    frozen_modules=('neck', 'text_encoder', 'geometry_encoder', 'encoder', 'decoder',
                    'bbox_head'),
    prompt_sampler=dict(type='InteractivePromptSampler', prob_box=0.5, max_objects=8),
    # SAM's losses, computed at the 48 x 48 low resolution against area-averaged masks (the
    # 168 x 168 loss was two thirds of a CPU step; same learning per iteration).
    interactive_loss=dict(type='SAMInteractiveLoss', focal_weight=20.0, dice_weight=1.0,
                          iou_weight=1.0, object_weight=1.0, supervise_all_iou=True,
                          low_res_targets=True),
    # SAM's 11 iterations scaled down for a CPU: first prompt + 2 clicks + 1 without a click.
    num_correction_rounds=2,
    num_no_click_rounds=1,
    num_clicks=20,
    # From scratch on shapes (few objects per image, one colour each) the best-of-3 loss alone
    # lets the 3 candidates specialise by colour and ignore the click: train the single-mask
    # output on one-point prompts too (see the class doc). The next round's mask prompt is
    # SAM's: the candidate with the highest predicted IoU, as in evaluation, so training
    # meets the wrong mask prompts (another object of the same colour) that clicks must undo.
    point_trains_single_mask=True,
    mask_prompt_choice='iou')

max_iters = 5000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, eta_min_ratio=0.05),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
