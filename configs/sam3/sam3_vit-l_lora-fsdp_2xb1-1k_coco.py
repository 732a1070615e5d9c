# SAM 3 LoRA fine-tuning (towers' base weights frozen, adapters + neck / encoders / decoder /
# heads trained) sharded with FSDP over 2 GPUs: estimated 3.7 GiB allocated per GPU at 1008 px
# with the mask head (4.9 GiB with CUDA context and headroom; one GPU: 5.2 / 6.4 GiB). Frozen
# base weights and trainable adapters share FSDP units, which `use_orig_params=True` allows.
#   bash tools/dist_train.sh configs/sam3/sam3_vit-l_lora-fsdp_2xb1-1k_coco.py 2
_base_ = ['./sam3_vit-l_lora_1xb1-1k_coco.py', '../_base_/fsdp_runtime.py']

# The strategy checkpoints the wrap units; the mask head keeps its own switch.
model = dict(
    backbone=dict(with_cp=False),
    text_encoder=dict(with_cp=False),
    geometry_encoder=dict(with_cp=False),
    encoder=dict(with_cp=False),
    decoder=dict(with_cp=False))
