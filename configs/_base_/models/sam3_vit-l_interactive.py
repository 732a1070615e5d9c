# SAM 3 image model with interactive segmentation (clicks / box / mask prompts, Meta's
# `predict_inst`): the concept detector of sam3_vit-l.py plus the tracker neck (a second simple
# FPN over the same ViT output, Meta's `sam2_convs`) and the SAM prompt encoder + mask decoder
# (Meta's `tracker.sam_prompt_encoder` / `tracker.sam_mask_decoder` / `tracker.no_mem_embed`).
# One ViT pass serves phrases and clicks. See docs/interactive.md.
_base_ = ['./sam3_vit-l.py']

model = dict(
    # keys update a copy of `neck` (same sizes as the concept neck)
    tracker_neck=dict(),
    interactive_head=dict(
        type='SAM3InteractiveHead',
        embed_dims=256,
        image_size=1008,
        backbone_stride=14,
        prompt_encoder=dict(mask_in_chans=16),
        mask_decoder=dict(
            num_multimask_outputs=3,
            transformer=dict(depth=2, num_heads=8, mlp_dims=2048),
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=True,
            iou_prediction_use_sigmoid=True,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
            dynamic_multimask_via_stability=True,
            dynamic_multimask_stability_delta=0.05,
            dynamic_multimask_stability_thresh=0.98),
        mask_threshold=0.0,
        max_hole_area=256.0))
