# The tiny SAM 3 on synthetic shapes with FSDP over 2 processes (CPU: gloo). In fp32, so its
# losses and weights equal a DDP run's (tests/test_tools/test_fsdp_train.py):
#   bash tools/dist_train.sh configs/sam3/sam3_tiny_scratch-fsdp_2xb2-5k_shapes.py 2
_base_ = ['./sam3_tiny_scratch_1xb2-5k_shapes.py', '../_base_/fsdp_runtime.py']

strategy = dict(model_wrapper=dict(mixed_precision=None))
