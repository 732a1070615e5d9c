"""score_vit_blocks: a block that leaves its input unchanged scores 0 and is dropped first."""
import copy

import torch
from mmdet.registry import MODELS

from mmsam3.compression import compress_sam3, score_vit_blocks
from mmsam3.testing.random_weights import randomize_parameters
from mmsam3.testing.tiny_model import tiny_model_cfg


def test_identity_block_scores_zero_and_is_dropped(bpe_path):
    cfg = tiny_model_cfg(bpe_path, backbone=dict(depth=8, global_att_blocks=(3, 7)))
    teacher = MODELS.build(copy.deepcopy(cfg)).eval()
    randomize_parameters(teacher, seed=1)
    with torch.no_grad():  # block 1 writes nothing into the residual stream
        for name in ('attn.proj', 'mlp.fc2'):
            layer = teacher.backbone.blocks[1].get_submodule(name)
            layer.weight.zero_()
            layer.bias.zero_()
    images = [torch.randn(3, 168, 168, generator=torch.Generator().manual_seed(i))
              for i in range(2)]
    scores = score_vit_blocks(teacher.backbone, images)
    assert len(scores) == 8 and abs(scores[1]) < 1e-6
    assert all(s > 1e-4 for i, s in enumerate(scores) if i != 1)
    student_cfg = copy.deepcopy(cfg)
    student_cfg.backbone.update(depth=4, global_att_blocks=(1, 3))
    _, plan = compress_sam3(teacher, student_cfg, calib_images=images, rank_blocks=True)
    best = lambda blocks: max(blocks, key=lambda b: scores[b])  # noqa: E731
    assert plan.vit_blocks == [best([0, 2]), 3, best([4, 5, 6]), 7]
    assert plan.block_scores == scores
    _, plan_even = compress_sam3(teacher, student_cfg)  # evenly spaced: the middle block
    assert plan_even.vit_blocks == [1, 3, 5, 7] and plan_even.block_scores is None
