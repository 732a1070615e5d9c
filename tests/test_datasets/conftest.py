"""Fixtures for the dataset / transform tests: tiny COCO jsons and images written to tmp_path."""
import os.path as osp

import pytest

import mmsam3  # noqa: F401  (registers the datasets / transforms)
from mmengine.registry import init_default_scope
from sam3_data_utils import draw_image, write_json


@pytest.fixture(autouse=True)
def _mmdet_scope():
    init_default_scope('mmdet')


@pytest.fixture
def coco_factory(tmp_path):
    """``make(root, images=[(id, h, w, rects)], anns=[...], cats=[...], ann_rel=..., img_rel=...)``
    writes images (rects drawn) and the json; returns the json path."""

    def make(images, anns, cats, ann_rel='annotations/train.json', img_rel='images',
             root=None, draw=True):
        root = str(root or tmp_path)
        img_entries = []
        for img_id, h, w, rects in images:
            name = f'{img_id:04d}.png'
            if draw:
                draw_image(osp.join(root, img_rel, name), h, w, rects)
            img_entries.append(dict(id=img_id, file_name=name, height=h, width=w))
        full = []
        for k, a in enumerate(anns):
            a = dict(a)
            a.setdefault('id', k + 1)
            a.setdefault('iscrowd', 0)
            a.setdefault('area', float(a['bbox'][2] * a['bbox'][3]))
            full.append(a)
        return write_json(osp.join(root, ann_rel),
                          dict(images=img_entries, annotations=full, categories=cats))

    return make


@pytest.fixture
def basic_coco(coco_factory):
    """3 images, categories in non-sorted id order (5 'cat', 2 'dog', 9 'bird')."""
    cats = [dict(id=5, name='cat'), dict(id=2, name='dog'), dict(id=9, name='bird')]
    images = [(1, 60, 80, [(10, 10, 20, 30)]), (2, 50, 50, [(5, 5, 10, 10), (30, 30, 15, 10)]),
              (3, 40, 40, [])]
    anns = [dict(image_id=1, category_id=2, bbox=[10, 10, 20, 30]),
            dict(image_id=2, category_id=5, bbox=[5, 5, 10, 10]),
            dict(image_id=2, category_id=9, bbox=[30, 30, 15, 10])]
    return coco_factory(images, anns, cats)
