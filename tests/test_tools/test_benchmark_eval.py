"""ODinW13 / RF100-VL benchmark configs: the real ODinW13 config through ``tools/test.py`` with the
tiny model on 13 one-image fixture datasets in the ODinW layout, and the RF100-VL list."""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.utils import write_coco_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ODINW = osp.join(REPO, 'configs/sam3/sam3_vit-l_zeroshot_odinw13.py')
RF100 = osp.join(REPO, 'configs/sam3/sam3_vit-l_zeroshot_rf100-vl.py')
TINY = osp.join(REPO, 'configs/_base_/models/sam3_tiny.py')

# category names of the ODinW13 jsons (as in mmdet's ODinW configs)
ODINW_CLASSES = {
    'AerialMaritimeDrone_large': ('boat', 'car', 'dock', 'jetski', 'lift'),
    'Aquarium': ('fish', 'jellyfish', 'penguin', 'puffin', 'shark', 'starfish', 'stingray'),
    'CottontailRabbits': ('Cottontail-Rabbit', ),
    'EgoHands_generic': ('hand', ),
    'NorthAmericaMushrooms': ('CoW', 'chanterelle'),
    'Packages': ('package', ),
    'PascalVOC': ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
                  'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
                  'sheep', 'sofa', 'train', 'tvmonitor'),
    'Raccoon': ('raccoon', ),
    'ShellfishOpenImages': ('Crab', 'Lobster', 'Shrimp'),
    'VehiclesOpenImages': ('Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck'),
    'pistols': ('pistol', ),
    'pothole': ('pothole', ),
    'thermalDogsAndPeople': ('dog', 'person'),
}


def make_odinw_fixture(root, entries):
    for i, d in enumerate(entries):
        classes = ODINW_CLASSES[d['name']]
        cats = [(k + 1, n) for k, n in enumerate(classes)]
        split_dir = osp.join(root, d['folder'], d['split'])
        write_coco_split(split_dir, cats, [[(1 + i % len(cats), [4, 4, 16, 12])]],
                         ann_name=d.get('ann_name', 'annotations_without_background.json'))


def tiny_benchmark_config(tmp_path, bpe_path):
    cfg = Config.fromfile(ODINW)
    cfg.model = Config.fromfile(TINY).model
    cfg.model.tokenizer.bpe_path = bpe_path
    cfg.model.test_cfg.max_per_img = 10
    for ds in cfg.test_dataloader.dataset.datasets:
        resize = [t for t in ds.pipeline if t.type.endswith('Resize')][0]
        resize.scale = (168, 168)  # the tiny model's input size
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.logger.interval = 100
    path = str(tmp_path / 'odinw13_tiny.py')
    cfg.dump(path)
    return cfg, path


def test_odinw13_through_tools_test(tmp_path, bpe_path, monkeypatch):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from test import main as test_main

    data_root = str(tmp_path / 'odinw') + '/'
    monkeypatch.setenv('ODINW13_DATA_ROOT', data_root)
    cfg, cfg_path = tiny_benchmark_config(tmp_path, bpe_path)
    entries = cfg.odinw13_datasets
    assert len(entries) == 13
    make_odinw_fixture(data_root, entries)

    init_default_scope('mmdet')
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta=dict()), ckpt)
    out = str(tmp_path / 'results.pkl')
    metrics = test_main([cfg_path, ckpt, '--out', out])

    names = [d['name'] for d in entries]
    per_dataset = [metrics[f'{n}/coco/bbox_mAP'] for n in names]
    # every fixture has a ground-truth box, so no dataset may report -1 (no ground truth)
    assert all(0 <= v <= 1 for v in per_dataset), per_dataset
    assert metrics['mean/coco/bbox_mAP'] == pytest.approx(np.mean(per_dataset), abs=1e-6)

    with open(out, 'rb') as f:
        dumped = pickle.load(f)
    assert [d['dataset_name'] for d in dumped] == names  # one image per dataset, in order
    texts = {d['dataset_name']: list(d['texts']) for d in dumped}
    # prompts come from each dataset's own classes, with the official ODinW overrides
    assert texts['AerialMaritimeDrone_large'] == ['boat', 'car', 'dock', 'jet ski', 'boat lift']
    assert texts['NorthAmericaMushrooms'] == ['chicken of wood', 'chanterelle']
    assert texts['PascalVOC'] == list(ODINW_CLASSES['PascalVOC'])
    for d in dumped:
        labels = d['pred_instances']['labels']
        assert labels.numel() == 0 or int(labels.max()) < len(ODINW_CLASSES[d['dataset_name']])

    # the dump + config give the same per-dataset AP offline (tools/analysis_tools)
    from pr_curve import main as pr_main
    from results_to_tables import main as tables_main
    per_class, per_dataset = tables_main([out, '--config', cfg_path, '--out-dir',
                                          str(tmp_path / 'tables')])
    assert [r['dataset'] for r in per_dataset] == names + ['mean (13 datasets)']
    for row in per_dataset[:-1]:
        assert row['AP'] == pytest.approx(metrics[f"{row['dataset']}/coco/bbox_mAP"], abs=6e-4)
    assert len(per_class) == sum(len(c) for c in ODINW_CLASSES.values())
    pngs = pr_main([out, '--config', cfg_path, '--out-dir', str(tmp_path / 'pr')])
    assert len(pngs) == 13 and all(osp.isfile(p) for p in pngs)


def test_rf100_vl_config_lists_the_official_datasets():
    cfg = Config.fromfile(RF100)
    names = list(cfg.rf100_vl_datasets)
    assert len(names) == len(set(names)) == 100
    assert names[:3] == ['-grccs', 'zebrasatasturias', 'cod-mw-warzone']
    assert names[-1] == 'cable-damage'
    datasets = cfg.test_dataloader.dataset.datasets
    assert cfg.test_evaluator.type == 'MultiDatasetMeanEvaluator'
    assert list(cfg.test_evaluator.dataset_prefixes) == names
    for name, ds, metric in zip(names, datasets, cfg.test_evaluator.metrics):
        assert ds.data_root.endswith(f'/{name}/') and ds.split == 'test'
        assert metric.ann_file == f'{ds.data_root}test/_annotations.coco.json'


def test_benchmark_data_root_from_environment(monkeypatch):
    monkeypatch.setenv('RF100VL_DATA_ROOT', '/datasets/rf100-vl/')
    cfg = Config.fromfile(RF100)
    assert cfg.test_dataloader.dataset.datasets[0].data_root == '/datasets/rf100-vl/-grccs/'
    monkeypatch.delenv('RF100VL_DATA_ROOT')
    monkeypatch.delenv('ODINW13_DATA_ROOT', raising=False)
    cfg = Config.fromfile(ODINW)
    assert cfg.test_dataloader.dataset.datasets[0].data_root == \
        'data/odinw/AerialMaritimeDrone/large/'
    assert cfg.test_dataloader.dataset.datasets[10].ann_name == \
        'test_annotations_without_background.json'
