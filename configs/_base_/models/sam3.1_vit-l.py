# SAM 3.1 image detector (the detector of `sam3.1_multiplex.pt`): the SAM 3 image model whose neck
# builds only the x4 / x2 / x1 levels (Meta's Sam3TriViTDetNeck, scale_factors 4, 2, 1, none
# dropped); everything else is SAM 3's. Convert with tools/model_converters/sam3_to_mmsam3.py.
_base_ = ['./sam3_vit-l.py']

model = dict(neck=dict(scale_factors=(4.0, 2.0, 1.0), num_dropped_levels=0))
