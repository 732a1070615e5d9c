"""SAM3Distiller: frozen teacher outside the module tree, losses, gradients, unlabeled images."""
import copy

import pytest
import torch
from mmdet.registry import MODELS

from mmsam3.testing.random_weights import randomize_parameters
from mmsam3.testing.tiny_model import tiny_model_cfg
from mmsam3.utils.synthetic_train_batch import synthetic_train_batch as synthetic_batch


@pytest.fixture(scope='module')
def teacher_files(bpe_path, tmp_path_factory):
    cfg = tiny_model_cfg(bpe_path, backbone=dict(depth=8, global_att_blocks=(3, 7)))
    teacher = MODELS.build(copy.deepcopy(cfg))
    randomize_parameters(teacher, seed=2)
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return cfg.to_dict(), path, teacher.state_dict()


def _distiller(bpe_path, teacher_files, **kwargs):
    t_cfg, path, _ = teacher_files
    cfg = tiny_model_cfg(bpe_path, **kwargs.pop('student', {}))
    return MODELS.build(dict(cfg, type='SAM3Distiller', teacher_config=t_cfg, teacher_ckpt=path,
                             teacher_input_size=168, **kwargs))


def _batch(model, size=126, unlabeled=()):
    data = synthetic_batch(size, 2, True)
    data = model.data_preprocessor(data, True)
    for i in unlabeled:
        data['data_samples'][i].set_metainfo(dict(unlabeled=True))
    return data['inputs'], data['data_samples']


def test_teacher_frozen_outside_module_tree(bpe_path, teacher_files):
    model = _distiller(bpe_path, teacher_files)
    _, _, t_sd = teacher_files
    teacher = model.teacher
    assert not any(k.startswith('teacher') for k in model.state_dict())
    ids = {id(p) for p in model.parameters()}
    assert not any(id(p) in ids for p in teacher.parameters())
    assert 'teacher' not in dict(model.named_children())
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, t_sd[k]) for k, v in teacher.state_dict().items())
    model.train()
    assert model.training and not teacher.training
    model.to(torch.float64)  # device / dtype moves reach the teacher
    assert teacher.backbone.pos_embed.dtype == torch.float64
    model.to(torch.float32)


def test_loss_finite_and_backprops_only_into_student(bpe_path, teacher_files):
    model = _distiller(bpe_path, teacher_files)
    model.train()
    inputs, samples = _batch(model)
    losses = model.loss(inputs, samples)
    kd = {k for k in losses if k.startswith('loss_kd_')}
    assert kd == {'loss_kd_feat_mse', 'loss_kd_feat_cos', 'loss_kd_logits', 'loss_kd_presence',
                  'loss_kd_bbox', 'loss_kd_giou', 'loss_kd_mask_bce', 'loss_kd_mask_dice'}
    assert 'loss_cls' in losses and 'loss_bbox' in losses  # task losses where GT exists
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert sum(p.grad is not None for p in model.backbone.parameters()) > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_unlabeled_images_use_only_teacher_targets(bpe_path, teacher_files):
    model = _distiller(bpe_path, teacher_files)
    model.train()
    inputs, samples = _batch(model, unlabeled=(0, ))
    losses = model.loss(inputs, samples)
    assert all(k.startswith('loss_kd_') for k in losses if 'loss' in k)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.decoder.query_embed.weight.grad is not None


def test_hungarian_matching_with_fewer_queries(bpe_path, teacher_files):
    model = _distiller(bpe_path, teacher_files, student=dict(decoder=dict(num_queries=10)))
    model.train()
    inputs, samples = _batch(model)
    out = model.loss(inputs, samples)
    assert torch.isfinite(sum(v for k, v in out.items() if 'loss' in k))
    index = _distiller(bpe_path, teacher_files, student=dict(decoder=dict(num_queries=10)),
                       query_ids=list(range(5, 15)))
    s_out = dict(logits=torch.zeros(1, 2, 10, 1), boxes=torch.rand(1, 2, 10, 4))
    t_out = dict(logits=torch.zeros(1, 2, 20, 1), boxes=torch.rand(1, 2, 20, 4))
    b, s, t = index.match_queries(s_out, t_out)
    assert t.tolist() == list(range(5, 15)) * 2 and s.tolist() == list(range(10)) * 2
    b, s, t = model.match_queries(s_out, t_out)  # Hungarian: a one-to-one assignment
    assert len(b) == 20 and len(set(zip(b.tolist(), t.tolist()))) == 20


def test_clear_errors(bpe_path, teacher_files, tmp_path):
    t_cfg, path, _ = teacher_files
    cfg = tiny_model_cfg(bpe_path)
    with pytest.raises(ValueError, match='needs teacher_ckpt'):
        MODELS.build(dict(cfg, type='SAM3Distiller', teacher_config=t_cfg))
    with pytest.raises(FileNotFoundError, match='not found'):
        MODELS.build(dict(cfg, type='SAM3Distiller', teacher_config=t_cfg,
                          teacher_ckpt=str(tmp_path / 'missing.pth')))
    with pytest.raises(ValueError, match='query_ids'):
        _distiller(bpe_path, teacher_files, student=dict(decoder=dict(num_queries=10)),
                   match='index')
    with pytest.raises(ValueError, match='does not match the teacher config'):
        MODELS.build(dict(cfg, type='SAM3Distiller', teacher_config=cfg.to_dict(),
                          teacher_ckpt=path))  # a 4-block config for the 8-block checkpoint


def test_predict_is_the_students(bpe_path, teacher_files):
    model = _distiller(bpe_path, teacher_files).eval()
    inputs, samples = _batch(model)
    with torch.no_grad():
        results = model.predict(inputs, samples)
    assert len(results[0].pred_instances.scores) > 0
