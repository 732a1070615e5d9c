# SAM 3.1 image detector with its interactive heads (`interactive_convs`,
# `interactive_sam_prompt_encoder`, `interactive_sam_mask_decoder` of sam3.1_multiplex.pt): the
# SAM 3.1 neck (x4 / x2 / x1 levels) for both paths and SAM 3's click head.
_base_ = ['./sam3_vit-l_interactive.py']

model = dict(neck=dict(scale_factors=(4.0, 2.0, 1.0), num_dropped_levels=0))
