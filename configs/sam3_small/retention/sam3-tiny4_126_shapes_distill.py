# Retention experiment, distilled student: sam3-tiny4_126_shapes.py trained against the
# 8-block teacher (task losses on the shapes ground truth + feature and decoder-output terms).
# The teacher sees the student's input resized to its own 168 px. Set model.teacher_ckpt.
_base_ = ['./sam3-tiny4_126_shapes.py']

model = dict(
    type='SAM3Distiller',
    teacher_config='configs/sam3_small/retention/sam3-tiny8_168_shapes.py',
    teacher_ckpt=None,
    teacher_input_size=168,
    task_weight=1.0,
    match='auto',
    distill_loss=dict(type='SAM3DistillLoss'))
