"""The base dataset configs build through mmengine Config + mmdet DATASETS after import mmsam3,
and the val evaluator (mmdet CocoMetric) maps our labels to the json's category ids."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmdet.registry import DATASETS, METRICS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', '_base_', 'datasets')


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    path = osp.join(REPO, 'tools', 'dataset_converters', 'make_shapes_dataset.py')
    spec = importlib.util.spec_from_file_location('make_shapes_dataset', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = str(tmp_path_factory.mktemp('cfg_shapes'))
    mod.make_shapes_dataset(root, 3, 3, seed=0, size=96, supercategory=True)
    return root + '/'


def check_train_item(item, num_classes):
    s = item['data_samples']
    assert item['inputs'].shape == (3, 1008, 1008)
    assert len(s.texts) == len(s.prompt_labels) == num_classes  # -1: every absent category too
    assert set(s.gt_instances.labels.tolist()) <= set(s.prompt_labels)
    assert s.img_shape == (1008, 1008) and 'pad_param' in s.metainfo


def test_roboflow_config(shapes_root):
    import mmsam3  # noqa: F401
    cfg = Config.fromfile(osp.join(CFG, 'sam3_roboflow.py'))
    assert cfg.train_scales[0] == (480, 480) and cfg.train_scales[-1] == (992, 992)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = shapes_root
    cfg.test_dataloader.dataset.split = 'valid'
    train = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(train) == 3 and len(train.metainfo['classes']) == 7
    check_train_item(train[0], 7)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    v = val[0]['data_samples']
    assert v.texts == list(val.metainfo['classes']) and v.img_shape == (1008, 1008)
    assert 'gt_masks' not in v.gt_instances  # box-only config

    # CocoMetric with ground truth as predictions gives AP 1: labels <-> category ids agree
    cfg.val_evaluator.ann_file = shapes_root + 'valid/_annotations.coco.json'
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = val.metainfo
    for i in range(len(val)):
        info = val.get_data_info(i)
        boxes = torch.tensor([x['bbox'] for x in info['instances']]).reshape(-1, 4)
        labels = torch.tensor([x['bbox_label'] for x in info['instances']], dtype=torch.long)
        metric.process({}, [dict(img_id=info['img_id'], ori_shape=(info['height'], info['width']),
                                 pred_instances=dict(bboxes=boxes, labels=labels,
                                                     scores=torch.ones(len(labels))))])
    res = metric.evaluate(len(val))
    assert res['coco/bbox_mAP'] == pytest.approx(1.0)


def test_coco_config(shapes_root):
    import mmsam3  # noqa: F401
    cfg = Config.fromfile(osp.join(CFG, 'sam3_coco_prompt.py'))
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    for key, split in (('train_dataloader', 'train'), ('val_dataloader', 'valid')):
        cfg[key].dataset.update(data_root=shapes_root,
                                ann_file=f'{split}/_annotations.coco.json',
                                data_prefix=dict(img=f'{split}/'))
    train = DATASETS.build(cfg.train_dataloader.dataset)
    item = train[1]
    check_train_item(item, 7)
    g = item['data_samples'].gt_instances
    assert g.masks.masks.shape[1:] == (1008, 1008) and len(g.masks) == len(g.labels)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert val.test_mode and len(val[0]['data_samples'].texts) == 7
