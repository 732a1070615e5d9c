"""make_shapes_dataset.py's harder data: --preset hard (stars, hexagons), textured backgrounds,
overlapping shapes whose masks are their visible pixels."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataset_converters import make_shapes_dataset as shapes


def test_hard_preset_has_new_shapes_textures_and_visible_masks(tmp_path):
    out = str(tmp_path / 'hard')
    shapes.main([out, '--train', '30', '--val', '2', '--size', '96', '--preset', 'hard'])
    coco = json.load(open(osp.join(out, 'train', '_annotations.coco.json')))
    names = [c['name'] for c in coco['categories']]
    assert names == list(shapes.HARD_CATEGORIES) and 'red star' in names
    occluded = [a for a in coco['annotations'] if isinstance(a['segmentation'], dict)]
    assert occluded, 'the hard preset should overlap some shapes'
    for a in coco['annotations']:
        seg = a['segmentation']
        if isinstance(seg, dict):  # visible pixels only: mask, area and box agree
            m = mask_utils.decode(dict(size=seg['size'], counts=seg['counts'].encode()))
            ys, xs = np.nonzero(m)
            assert a['area'] == int(m.sum()) > 0
            assert a['bbox'] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                 int(ys.max() - ys.min() + 1)]
    # a textured background varies far more than the plain one (noise sigma 8)
    img = cv2.imread(osp.join(out, 'train', '000000.png')).astype(np.float32)
    plain = str(tmp_path / 'plain')
    shapes.main([plain, '--train', '1', '--val', '0', '--size', '96', '--preset', 'distinct'])
    img_plain = cv2.imread(osp.join(plain, 'train', '000000.png')).astype(np.float32)
    corner = (slice(0, 12), slice(0, 12))
    assert img[corner].std() > img_plain[corner].std()


def test_overlap_zero_keeps_the_old_data(tmp_path):
    """Options left out: byte-identical images and annotations to an explicit plain / 0."""
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    shapes.make_shapes_dataset(a, 3, 1, size=96, preset='distinct')
    shapes.make_shapes_dataset(b, 3, 1, size=96, preset='distinct', background='plain',
                               overlap=0.0, radius=(0.08, 0.16))
    for split in ('train', 'valid'):
        ja = open(osp.join(a, split, '_annotations.coco.json')).read()
        assert ja == open(osp.join(b, split, '_annotations.coco.json')).read()
        assert all(isinstance(x['segmentation'], list) for x in json.loads(ja)['annotations'])


@pytest.mark.parametrize('kwargs, match', [
    (dict(overlap=1.0), 'overlap must be in'),
    (dict(background='stripes'), 'background must be one of'),
])
def test_bad_hard_options_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        shapes.make_shapes_dataset(str(tmp_path / 'x'), 1, 1, size=96, **kwargs)
    assert not (tmp_path / 'x').exists()
