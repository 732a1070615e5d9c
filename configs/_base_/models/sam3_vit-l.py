# SAM 3 image model, official architecture (ViT-L/14 at 1008, 840M parameters incl. the heads).
# The CLIP BPE vocabulary ships with the official checkpoint download; point bpe_path at it.
bpe_path = 'checkpoints/bpe_simple_vocab_16e6.txt.gz'
image_size = 1008
embed_dims = 256

model = dict(
    type='SAM3',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # SAM 3 normalises to [-1, 1]: (x / 255 - 0.5) / 0.5
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=14,
        pad_mask=True),
    backbone=dict(
        type='SAM3ViT',
        img_size=image_size,
        patch_size=14,
        embed_dims=1024,
        depth=32,
        num_heads=16,
        mlp_ratio=4.625,
        window_size=24,
        global_att_blocks=(7, 15, 23, 31),
        pretrain_img_size=336,
        drop_path_rate=0.1,
        with_cp=False),
    neck=dict(type='SAM3FPN', in_channels=1024, out_channels=embed_dims,
              scale_factors=(4.0, 2.0, 1.0, 0.5), num_dropped_levels=1),
    text_encoder=dict(type='SAM3TextEncoder', embed_dims=embed_dims, width=1024, heads=16,
                      layers=24, context_length=32),
    tokenizer=dict(type='SAM3Tokenizer', bpe_path=bpe_path, context_length=32),
    geometry_encoder=dict(type='SAM3GeometryEncoder', embed_dims=embed_dims, num_layers=3,
                          num_heads=8, dim_feedforward=2048, dropout=0.1),
    encoder=dict(type='SAM3FusionEncoder', num_layers=6, embed_dims=embed_dims, num_heads=8,
                 dim_feedforward=2048, dropout=0.1),
    decoder=dict(type='SAM3Decoder', num_layers=6, embed_dims=embed_dims, num_heads=8,
                 dim_feedforward=2048, dropout=0.1, num_queries=200, dac=True,
                 with_presence_token=True),
    bbox_head=dict(
        type='SAM3Head',
        scoring_head=dict(type='SAM3ScoringHead', embed_dims=embed_dims, d_proj=embed_dims,
                          mlp_hidden_dim=2048, dropout=0.1, clamp_max_val=12.0),
        mask_head=dict(type='SAM3MaskHead', embed_dims=embed_dims, num_heads=8,
                       num_upsampling_stages=3),
        criterion=dict(type='SAM3Criterion')),
    # score = sigmoid(logit) * sigmoid(presence); every query is kept by default (official eval).
    test_cfg=dict(score_thr=0.0, max_per_prompt=-1, max_per_img=100, mask_thr=0.5,
                  with_masks=True))
