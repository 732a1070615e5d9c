# A tiny SAM 3: the same architecture and mechanisms (window + global RoPE blocks, tiled
# position embedding, DAC, boxRPB, presence token, all heads) at widths that run in seconds on a
# CPU. Used by tests, the parity tool (`--size tiny`) and the from-scratch shapes experiment.
_base_ = ['./sam3_vit-l.py']

image_size = 168
d_model = 64

model = dict(
    backbone=dict(img_size=image_size, embed_dim=64, depth=4, num_heads=4, window_size=6,
                  global_att_blocks=(1, 3), pretrain_img_size=84),
    neck=dict(in_channels=64, out_channels=d_model),
    text_encoder=dict(d_model=d_model, width=64, heads=4, layers=2),
    geometry_encoder=dict(d_model=d_model, num_layers=2, dim_feedforward=128),
    encoder=dict(num_layers=2, d_model=d_model, dim_feedforward=128),
    decoder=dict(num_layers=2, d_model=d_model, dim_feedforward=128, num_queries=20),
    bbox_head=dict(
        scoring_head=dict(d_model=d_model, d_proj=d_model, mlp_hidden_dim=128),
        mask_head=dict(d_model=d_model),
        criterion=dict(cls_loss=dict(type='SAM3IABCELoss', pad_n_queries=20))))
