"""tools/dataset_converters/make_shapes_dataset.py: deterministic Roboflow-layout shapes."""
import filecmp
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
from mmdet.registry import DATASETS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def shapes_mod():
    path = osp.join(REPO, 'tools', 'dataset_converters', 'make_shapes_dataset.py')
    spec = importlib.util.spec_from_file_location('make_shapes_dataset', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(path):
    with open(path) as f:
        return json.load(f)


def test_layout_and_content(tmp_path, shapes_mod):
    out = str(tmp_path / 'shapes')
    shapes_mod.main([out, '--train', '12', '--val', '3', '--seed', '0', '--size', '96'])
    train = load(osp.join(out, 'train', '_annotations.coco.json'))
    assert len(load(osp.join(out, 'valid', '_annotations.coco.json'))['images']) == 3
    assert not osp.exists(osp.join(out, 'test'))
    names = [c['name'] for c in train['categories']]
    assert names == list(shapes_mod.CATEGORIES) and 6 <= len(names) <= 8
    assert len(train['images']) == 12
    per_img = {}
    for a in train['annotations']:
        per_img.setdefault(a['image_id'], set()).add(a['category_id'])
        x, y, w, h = a['bbox']
        assert w >= 96 * 0.1 and h >= 96 * 0.1  # large shapes
        assert a['iscrowd'] == 0 and a['area'] > 0 and a['segmentation']
    # several instances per image, and every image misses some category
    assert max(len(v) for v in per_img.values()) >= 2
    assert all(len(v) < len(names) for v in per_img.values())
    img = osp.join(out, 'train', train['images'][0]['file_name'])
    assert osp.isfile(img)


def test_deterministic(tmp_path, shapes_mod):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    shapes_mod.make_shapes_dataset(a, 4, 2, seed=3, size=80)
    shapes_mod.make_shapes_dataset(b, 4, 2, seed=3, size=80)
    shapes_mod.make_shapes_dataset(c, 4, 2, seed=4, size=80)
    for split in ('train', 'valid'):
        ja = osp.join(a, split, '_annotations.coco.json')
        assert filecmp.cmp(ja, osp.join(b, split, '_annotations.coco.json'), shallow=False)
        assert filecmp.cmp(osp.join(a, split, '000001.png'), osp.join(b, split, '000001.png'),
                           shallow=False)
    assert load(osp.join(a, 'train', '_annotations.coco.json')) != load(
        osp.join(c, 'train', '_annotations.coco.json'))


@pytest.mark.parametrize('mask_format', ['polygon', 'rle'])
def test_loads_with_masks_on_drawn_shapes(tmp_path, shapes_mod, mask_format):
    out = str(tmp_path / 'shapes')
    shapes_mod.make_shapes_dataset(out, 6, 2, seed=1, size=96, test=2, mask_format=mask_format,
                                   supercategory=True)
    pipe = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='BuildPromptQueries')]
    ds = DATASETS.build(dict(type='SAM3PromptCocoDataset', data_root=out, split='train',
                             pipeline=pipe))
    assert ds.metainfo['classes'][0] == 'shapes'  # Roboflow supercategory kept (official)
    n_checked = 0
    for i in range(len(ds)):
        r = ds[i]
        bg = np.median(r['img'].reshape(-1, 3), axis=0)
        for k in range(len(r['gt_bboxes_labels'])):
            m = r['gt_masks'].masks[k].astype(bool)
            x1, y1, x2, y2 = r['gt_bboxes'].tensor[k].tolist()
            ys, xs = np.nonzero(m)
            assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
            assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1
            # the masked pixels are the coloured shape, not the light background
            diff = np.abs(r['img'][m].astype(int) - bg).sum(-1)
            assert (diff > 60).mean() > 0.9
            n_checked += 1
        assert 'shapes' in r['texts']  # always a negative prompt
    assert n_checked > 0
    assert len(DATASETS.build(dict(type='SAM3PromptCocoDataset', data_root=out, split='test',
                                   test_mode=True))) == 2


def test_distinct_preset_and_radius(tmp_path, shapes_mod):
    """--preset distinct: 4 categories of their own colour, purple / grey distractors;
    --radius bounds the drawn shape size."""
    out = str(tmp_path / 'distinct')
    shapes_mod.main([out, '--train', '16', '--val', '2', '--size', '168', '--preset', 'distinct',
                     '--radius', '0.15', '0.25'])
    train = load(osp.join(out, 'train', '_annotations.coco.json'))
    names = [c['name'] for c in train['categories']]
    assert names == list(shapes_mod.DISTINCT_CATEGORIES)
    assert len({n.split()[0] for n in names}) == len(names)  # one colour per category
    assert all(d.split()[0] in ('purple', 'grey') for d in shapes_mod.DISTINCT_DISTRACTORS)
    assert train['annotations']
    for a in train['annotations']:
        w, h = a['bbox'][2:]
        # a shape of circumradius r spans at least r (triangle height 1.5 r) and at most 2 r
        assert 0.15 * 168 - 2 <= max(w, h) <= 2 * 0.25 * 168 + 2


@pytest.mark.parametrize('kwargs', [dict(preset='nope'), dict(radius=(0.3, 0.4)),
                                    dict(radius=(0.2, 0.1)), dict(radius=(0.1, ))])
def test_bad_options_raise(tmp_path, shapes_mod, kwargs):
    with pytest.raises(ValueError):
        shapes_mod.make_shapes_dataset(str(tmp_path / 'x'), 2, 1, size=96, **kwargs)
