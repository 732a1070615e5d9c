# FSDP through mmengine's FlexibleRunner (mmdet's `projects/example_largemodel` way): parameters,
# gradients and AdamW state sharded over the GPUs, one FSDP unit per repeated layer (ViT block,
# text-tower block, encoder / decoder layer; `sam3_fsdp_wrap_policy`), activation checkpointing
# of the same layers by the strategy, bf16 parameters and activations with fp32 gradient
# reduction, full (unsharded) state dicts in the checkpoints, so they load into the plain model
# and into DDP / single-GPU runs.
#   bash tools/dist_train.sh CONFIG 8
# `use_orig_params=True` lets frozen towers and LoRA share a unit with trainable parameters.
# Buffers keep their dtype (the RoPE cos / sin tables stay fp32). Bases may not share keys in
# mmengine, so each FSDP config turns the model's own checkpointing switches off itself.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(type='sam3_fsdp_wrap_policy'),
        use_orig_params=True,
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32', buffer_dtype=None)),
    activation_checkpointing=dict(check_fn='sam3_checkpoint_check_fn'),
    state_dict_cfg='full')
