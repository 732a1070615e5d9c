"""compress_sam3 on the tiny model: identity reproduction, depth / width / query cuts, errors."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

from mmsam3.compression import CompressionError, compress_sam3, load_teacher, make_plan
from mmsam3.testing.random_weights import randomize_parameters
from mmsam3.testing.tiny_model import tiny_model_cfg

SIZE = 168


@pytest.fixture(scope='module')
def teacher_and_cfg(bpe_path):
    cfg = tiny_model_cfg(bpe_path)
    teacher = MODELS.build(copy.deepcopy(cfg)).eval()
    randomize_parameters(teacher, seed=3)
    return teacher, cfg


def _samples(texts=('red circle', 'blue square')):
    return [DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                        batch_input_shape=(SIZE, SIZE), scale_factor=(1., 1.),
                                        texts=list(texts)))]


def _small_cfg(cfg):
    s = copy.deepcopy(cfg)
    s.backbone.update(depth=3, global_att_blocks=(1, 2), embed_dims=48, num_heads=3,
                      mlp_ratio=2.0)
    s.neck.update(in_channels=48)
    s.text_encoder.update(layers=1, mlp_ratio=2.0)
    s.encoder.update(num_layers=1, dim_feedforward=64)
    s.decoder.update(num_layers=1, dim_feedforward=64, num_queries=10)
    return s


def test_identity_compression_reproduces_teacher(teacher_and_cfg):
    teacher, cfg = teacher_and_cfg
    student, plan = compress_sam3(teacher, copy.deepcopy(cfg))
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    assert t_sd.keys() == s_sd.keys()
    assert all(torch.equal(t_sd[k], s_sd[k]) for k in t_sd)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = teacher._forward(x, _samples()), student._forward(x, _samples())
    for key in a:
        if a[key] is not None:
            assert torch.equal(a[key], b[key]), key
    assert plan.vit_blocks == [0, 1, 2, 3] and plan.queries == list(range(20))


def test_depth_width_query_cut_takes_teacher_slices(teacher_and_cfg):
    teacher, cfg = teacher_and_cfg
    student, plan = compress_sam3(teacher, _small_cfg(cfg))
    assert plan.vit_blocks == [0, 1, 3]  # both global blocks (1, 3) kept
    assert [b.window_size == 0 for b in student.backbone.blocks] == [False, True, True]
    assert len(plan.vit_channels) == 48 and all(len(h) == 3 for h in plan.vit_heads)
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    # student block 2 = teacher block 3; its qkv rows are whole heads of q, k and v
    heads, r = plan.vit_heads[2], torch.tensor(plan.vit_channels)
    rows = torch.tensor([h * 16 + j for h in heads for j in range(16)])
    t_qkv = t_sd['backbone.blocks.3.attn.qkv.weight']
    expect = torch.cat([t_qkv[rows], t_qkv[rows + 64], t_qkv[rows + 128]])[:, r]
    assert torch.equal(s_sd['backbone.blocks.2.attn.qkv.weight'], expect)
    assert torch.equal(s_sd['decoder.query_embed.weight'],
                       t_sd['decoder.query_embed.weight'][:10])
    assert torch.equal(s_sd['decoder.layers.0.norm1.weight'], t_sd['decoder.layers.1.norm1.weight'])
    with torch.no_grad():
        out = student._forward(torch.randn(1, 3, SIZE, SIZE), _samples())
    assert out['logits'].shape == (1, 2, 10, 1) and torch.isfinite(out['boxes']).all()
    text = '\n'.join(plan.summary())
    assert 'ViT blocks 3/4: [0, 1, 3]' in text and 'queries 10/20' in text


def test_explicit_keep_lists(teacher_and_cfg):
    teacher, cfg = teacher_and_cfg
    s = _small_cfg(cfg)
    _, plan = compress_sam3(teacher, s, dict(vit_blocks=[0, 1, 3], queries=list(range(10, 20)),
                                             decoder_layers=[0]))
    assert plan.vit_blocks == [0, 1, 3] and plan.queries == list(range(10, 20))
    assert plan.decoder_layers == [0]
    with pytest.raises(CompressionError, match='land on'):
        compress_sam3(teacher, s, dict(vit_blocks=[0, 1, 2]))
    with pytest.raises(CompressionError, match='lists 2 indices'):
        compress_sam3(teacher, s, dict(vit_blocks=[1, 3]))
    with pytest.raises(CompressionError, match='unknown keys'):
        compress_sam3(teacher, s, dict(vit_layers=[1, 2, 3]))


@pytest.mark.parametrize('override, match', [
    (dict(backbone=dict(depth=6, global_att_blocks=(1, 5))), 'more than the teacher'),
    (dict(backbone=dict(depth=3, global_att_blocks=(1, 3))), 'out of range'),
    (dict(backbone=dict(embed_dims=40, num_heads=2), neck=dict(in_channels=40)),
     'not a multiple of the teacher\'s head size 16'),
    (dict(backbone=dict(embed_dims=48, num_heads=4), neck=dict(in_channels=48)),
     'head size 12'),
    (dict(decoder=dict(num_queries=30)), 'more than the teacher'),
    (dict(encoder=dict(num_layers=3)), 'fusion-encoder layers'),
])
def test_student_that_does_not_fit(teacher_and_cfg, override, match):
    teacher, cfg = teacher_and_cfg
    s = copy.deepcopy(cfg)
    for key, value in override.items():
        s[key].update(value)
    with pytest.raises(CompressionError, match=match):
        compress_sam3(teacher, s)


def test_teacher_checkpoint_not_matching_config(teacher_and_cfg, tmp_path):
    teacher, cfg = teacher_and_cfg
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    assert torch.equal(load_teacher(copy.deepcopy(cfg), path).backbone.pos_embed,
                       teacher.backbone.pos_embed)
    other = copy.deepcopy(cfg)
    other.backbone.update(depth=6, global_att_blocks=(1, 5))
    with pytest.raises(CompressionError, match=r'does not match the teacher config.*missing: '
                       r'backbone\.blocks\.4'):
        load_teacher(other, path)
    wider = copy.deepcopy(cfg)
    wider.decoder.update(num_queries=30)
    with pytest.raises(CompressionError, match='another shape: decoder.query_embed.weight'):
        load_teacher(wider, path)


def test_plan_is_serialisable(teacher_and_cfg):
    import pickle
    teacher, cfg = teacher_and_cfg
    student = MODELS.build(_small_cfg(cfg))
    plan = make_plan(teacher, student)
    d = pickle.loads(pickle.dumps(plan.to_dict()))
    assert d['vit_blocks'] == [0, 1, 3] and d['sizes']['teacher']['vit_heads'] == 4
