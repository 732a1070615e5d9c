# A tiny SAM 3: the same architecture and mechanisms (window + global RoPE blocks, tiled
# position embedding, DAC, boxRPB, presence token, all heads) at widths that run in seconds on a
# CPU. Used by tests, the parity tool (`--size tiny`) and the from-scratch shapes experiment.
_base_ = ['./sam3_vit-l.py']

image_size = 168
embed_dims = 64

model = dict(
    backbone=dict(img_size=image_size, embed_dims=64, depth=4, num_heads=4, window_size=6,
                  global_att_blocks=(1, 3), pretrain_img_size=84),
    neck=dict(in_channels=64, out_channels=embed_dims),
    text_encoder=dict(embed_dims=embed_dims, width=64, heads=4, layers=2),
    geometry_encoder=dict(embed_dims=embed_dims, num_layers=2, dim_feedforward=128),
    encoder=dict(num_layers=2, embed_dims=embed_dims, dim_feedforward=128),
    decoder=dict(num_layers=2, embed_dims=embed_dims, dim_feedforward=128, num_queries=20),
    bbox_head=dict(
        scoring_head=dict(embed_dims=embed_dims, d_proj=embed_dims, mlp_hidden_dim=128),
        mask_head=dict(embed_dims=embed_dims),
        criterion=dict(cls_loss=dict(type='SAM3IABCELoss', pad_n_queries=20))))
