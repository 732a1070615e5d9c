"""retention_check.py refuses to judge where its ratios would be noise, and names bad input."""
import json
import os
import os.path as osp

import pytest
import torch

from retention_check import main

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def write_split(root, split, num_images):
    os.makedirs(root / split, exist_ok=True)
    (root / split / '_annotations.coco.json').write_text(json.dumps(dict(
        images=[dict(id=i + 1, file_name=f'{i}.jpg', width=168, height=168)
                for i in range(num_images)],
        annotations=[], categories=[dict(id=1, name='red circle')])))


def test_a_teacher_below_the_floor_is_refused(tmp_path, bpe_path, capsys):
    """A 4-iteration teacher learns nothing: exit 2 with the reason, before any student runs."""
    work = tmp_path / 'work'
    with pytest.raises(SystemExit) as exc:
        main(['--work-dir', str(work), '--data-root', str(tmp_path / 'shapes'), '--bpe', bpe_path,
              '--train-images', '8', '--val-images', '4', '--teacher-iters', '4',
              '--budget', '5', '--threads', '1'])
    assert exc.value.code == 2
    out = capsys.readouterr().out
    assert 'data ' in out and '8 training and 4 validation images' in out
    assert 'REFUSED: the teacher reaches bbox AP50' in out and 'below the floor 0.3' in out
    assert not (work / 'student_init.pth').exists() and not (work / 'distilled').exists()


def test_a_data_root_without_a_validation_split_is_named(tmp_path, bpe_path):
    root = tmp_path / 'mydata'
    write_split(root, 'train', 3)
    with pytest.raises(SystemExit, match='has no validation split'):
        main(['--work-dir', str(tmp_path / 'work'), '--data-root', str(root), '--bpe', bpe_path])
    assert not (root / 'valid').exists()  # nothing was generated over the user's folder


def test_a_teacher_checkpoint_of_another_size_is_refused(tmp_path, bpe_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    root = tmp_path / 'data'
    write_split(root, 'train', 2)
    write_split(root, 'valid', 2)
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/models/sam3_tiny.py'))  # 4 ViT blocks, not 8
    cfg.model.tokenizer.bpe_path = bpe_path
    ckpt = tmp_path / 'tiny4.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)
    with pytest.raises(SystemExit, match='does not fit .*another model size.*missing '
                                         'backbone.blocks.4'):
        main(['--work-dir', str(tmp_path / 'work'), '--data-root', str(root), '--bpe', bpe_path,
              '--teacher-ckpt', str(ckpt)])


def test_a_budget_that_cannot_train_is_refused(tmp_path, bpe_path):
    root = tmp_path / 'data'
    write_split(root, 'train', 2)
    write_split(root, 'valid', 2)
    with pytest.raises(SystemExit, match='--budget must be positive'):
        main(['--work-dir', str(tmp_path / 'work'), '--data-root', str(root), '--bpe', bpe_path,
              '--budget', '0'])
