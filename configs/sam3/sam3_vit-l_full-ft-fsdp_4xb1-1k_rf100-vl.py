# SAM 3 full fine-tuning (official RF100-VL recipe) sharded with FSDP over 4 GPUs, one image each:
# estimated 4.3 GiB allocated per GPU at 1008 px (5.5 GiB with CUDA context and headroom; one GPU
# needs 13.6 / 15.7 GiB), so it fits 8 GB cards (docs/training_memory.md).
#   bash tools/dist_train.sh configs/sam3/sam3_vit-l_full-ft-fsdp_4xb1-1k_rf100-vl.py 4
#   python tools/analysis_tools/train_memory.py THIS_CONFIG --world-size 4
# 4 images per step (the official run: 2); for the same number of epochs set
# train_cfg.max_iters=500 and param_scheduler.0.end=500. Checkpoints are full state dicts: they
# load into the plain model (tools/test.py, demos) and into DDP runs.
_base_ = ['./sam3_vit-l_full-ft_1xb1-1k_rf100-vl.py', '../_base_/fsdp_runtime.py']

# The strategy checkpoints the wrap units (ViT and text blocks, fusion / geometry encoders,
# decoder layers); the model's own switches would recompute them a second time.
model = dict(
    backbone=dict(with_cp=False),
    text_encoder=dict(with_cp=False),
    geometry_encoder=dict(with_cp=False),
    encoder=dict(with_cp=False),
    decoder=dict(with_cp=False))
