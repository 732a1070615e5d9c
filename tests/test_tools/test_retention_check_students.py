"""retention_check.py's student choices: the unlabeled student's data (labelled images plus
images whose annotations are dropped), per-iteration runs, and what it refuses."""
import json
import os.path as osp

import pytest

import retention_check as rc
from dataset_converters.make_shapes_dataset import make_shapes_dataset


@pytest.fixture
def roots(tmp_path):
    lab, unl = str(tmp_path / 'lab'), str(tmp_path / 'unl')
    make_shapes_dataset(lab, 4, 2, seed=0, size=168, radius=(0.15, 0.25), preset='distinct')
    make_shapes_dataset(unl, 3, 0, seed=1, size=168, radius=(0.15, 0.25), preset='distinct')
    return lab, unl


def test_the_unlabeled_student_sees_both_sets_and_no_annotations_of_the_second(
        tmp_path, roots, bpe_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsam3  # noqa: F401
    from mmdet.registry import DATASETS
    lab, unl = roots
    args = rc.parse_args(['--data-root', lab, '--unlabeled-root', unl, '--student-iters', '7',
                          '--bpe', bpe_path])
    args.work_dir = str(tmp_path)
    coco = rc.unlabeled_annotations(unl, lab)
    assert len(coco['images']) == 3 and coco['annotations'] == []
    ann = str(tmp_path / 'unlabeled_images.json')
    with open(ann, 'w') as f:
        json.dump(coco, f)
    cfg = Config.fromfile(rc.student_config('unlabeled', rc.DISTILL_CFG, args, None, 1e-4,
                                            'teacher.pth', ann))
    assert cfg.train_cfg.max_iters == 7 and cfg.default_hooks.checkpoint.interval == 7
    assert cfg.model.type == 'SAM3Distiller'
    init_default_scope('mmdet')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 4 + 3
    labelled, unlabeled = dataset[0]['data_samples'], dataset[4]['data_samples']
    assert not labelled.metainfo.get('unlabeled') and len(labelled.gt_instances) > 0
    assert unlabeled.metainfo['unlabeled'] is True and len(unlabeled.gt_instances) == 0
    # empty masks as well: mmdet's data preprocessor pads every sample's masks in a mixed batch
    assert labelled.gt_instances.masks.masks.shape[1:] == unlabeled.gt_instances.masks.masks.shape[1:]
    # prompted with every category name of the labelled data
    names = [c['name'] for c in json.load(open(osp.join(lab, 'train',
                                                        '_annotations.coco.json')))['categories']]
    assert sorted(unlabeled.metainfo['texts']) == sorted(names)


def test_an_unlabeled_root_of_other_categories_is_refused_before_training(tmp_path, roots,
                                                                         bpe_path):
    lab, _ = roots
    other = str(tmp_path / 'other')
    make_shapes_dataset(other, 2, 0, seed=2, size=168, preset='hard')
    work = tmp_path / 'work'
    with pytest.raises(SystemExit, match='has other categories'):
        rc.main(['--work-dir', str(work), '--data-root', lab, '--bpe', bpe_path,
                 '--unlabeled-root', other])
    with pytest.raises(SystemExit, match='needs --unlabeled-root'):
        rc.main(['--work-dir', str(work), '--data-root', lab, '--bpe', bpe_path,
                 '--students', 'unlabeled'])
    with pytest.raises(SystemExit, match='--student-iters must be positive'):
        rc.main(['--work-dir', str(work), '--data-root', lab, '--bpe', bpe_path,
                 '--student-iters', '0'])
    assert not (work / 'teacher').exists()


def test_teacher_checkpoint_is_the_reuse_option():
    args = rc.parse_args(['--teacher-checkpoint', 'a.pth'])
    assert args.teacher_ckpt == 'a.pth'


def test_a_finished_student_run_is_reused_only_with_reuse_students(tmp_path, roots):
    lab, _ = roots
    args = rc.parse_args(['--data-root', lab, '--reuse-students'])
    args.work_dir = str(tmp_path)
    cfg = rc.student_config('scratch', rc.STUDENT_CFG, args, None, 3e-4)
    ckpt = tmp_path / 'scratch' / 'iter_123.pth'
    ckpt.parent.mkdir()
    ckpt.write_bytes(b'')
    with open(tmp_path / 'scratch_run.json', 'w') as f:
        json.dump(dict(config=open(cfg).read(), checkpoint=str(ckpt), iters=123, wall_s=9.0,
                       cpu_s=7.0), f)
    assert rc.student_run('scratch', cfg, args, {}, []) == (str(ckpt), 123, 9.0, 7.0)
