# SAM 3 LiteText: the SAM 3 image model with the MobileCLIP-style text encoder of transformers'
# `Sam3LiteTextModel` (defaults: its `Sam3LiteTextTextConfig`, 12 layers of width 512). Convert a
# transformers LiteText checkpoint with tools/model_converters/sam3_to_mmsam3.py (it prints the
# text-encoder sizes found in config.json; set them here when they differ).
_base_ = ['./sam3_vit-l.py']

model = dict(
    text_encoder=dict(
        _delete_=True,
        type='SAM3LiteTextEncoder',
        embed_dims=256,
        width=512,
        layers=12,
        heads=8,
        hidden_dims=2048,
        context_length=32,
        max_position_embeddings=77,
        projection_dims=512,
        use_repmixer_blocks=True,
        repmixer_kernel_size=11,
        pad_token_id=49407))
