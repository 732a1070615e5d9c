# The tiny SAM 3 (sam3_tiny.py) with interactive segmentation at tiny widths: tracker neck and
# SAM prompt encoder / mask decoder (64 channels, 12 x 12 feature grid, 48 x 48 low-res masks).
# Used by tests, the parity checks and the interactive training experiments.
_base_ = ['./sam3_tiny.py']

image_size = 168
embed_dims = 64

model = dict(
    tracker_neck=dict(),
    interactive_head=dict(
        type='SAM3InteractiveHead',
        embed_dims=embed_dims,
        image_size=image_size,
        backbone_stride=14,
        prompt_encoder=dict(mask_in_chans=16),
        mask_decoder=dict(
            num_multimask_outputs=3,
            transformer=dict(depth=2, num_heads=4, mlp_dims=128),
            iou_head_depth=3,
            iou_head_hidden_dim=64,
            use_high_res_features=True,
            iou_prediction_use_sigmoid=True,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
            dynamic_multimask_via_stability=True,
            dynamic_multimask_stability_delta=0.05,
            dynamic_multimask_stability_thresh=0.98),
        mask_threshold=0.0,
        max_hole_area=256.0))
