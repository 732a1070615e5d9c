"""AP on resampled image sets: the full set gives pycocotools' AP50 exactly, repeats count."""
import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmsam3.evaluation.functional.bootstrap_ap import (ap_of_sample, bootstrap_aps, image_records,
                                                       interval)


def make_fixture(seed, num_imgs=12, num_cats=3):
    rng = np.random.default_rng(seed)
    images = [dict(id=i + 1, width=200, height=200) for i in range(num_imgs)]
    cats = [dict(id=c + 1, name=f'c{c}') for c in range(num_cats)]
    anns, dets = [], []
    for img in images:
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(10, 50, 2)
            cat = int(rng.integers(1, num_cats + 1))
            anns.append(dict(id=len(anns) + 1, image_id=img['id'], category_id=cat,
                             bbox=[x, y, w, h], area=w * h, iscrowd=int(rng.random() < 0.1)))
            if rng.random() < 0.7:  # a detection near it (sometimes the wrong category)
                jitter = rng.normal(0, 6, 4)
                dets.append(dict(image_id=img['id'],
                                 category_id=cat if rng.random() < 0.8 else 1,
                                 bbox=[x + jitter[0], y + jitter[1], w + abs(jitter[2]),
                                       h + abs(jitter[3])], score=float(rng.random())))
        for _ in range(rng.integers(0, 3)):  # false positives
            dets.append(dict(image_id=img['id'], category_id=int(rng.integers(1, num_cats + 1)),
                             bbox=list(rng.uniform(0, 150, 2)) + list(rng.uniform(5, 40, 2)),
                             score=float(rng.random())))
    return dict(images=images, annotations=anns, categories=cats), dets


def coco_ap50(gt, dets):
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[1]


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_full_image_set_equals_cocoeval(seed):
    gt, dets = make_fixture(seed)
    records = image_records(gt, dets)
    ours = ap_of_sample(records, range(len(records['img_ids'])))
    assert ours == pytest.approx(coco_ap50(gt, dets), abs=1e-12)


def test_a_repeated_image_counts_twice():
    gt, dets = make_fixture(5)
    records = image_records(gt, dets)
    # The same images, the first one drawn twice: equal to COCOeval on a set holding two
    # renamed copies of it.
    first = gt['images'][0]['id']
    copy_id = 1000
    gt2 = dict(gt, images=gt['images'] + [dict(gt['images'][0], id=copy_id)],
               annotations=gt['annotations'] + [
                   dict(a, id=5000 + n, image_id=copy_id)
                   for n, a in enumerate(a for a in gt['annotations'] if a['image_id'] == first)])
    dets2 = dets + [dict(d, image_id=copy_id) for d in dets if d['image_id'] == first]
    sample = [0] + list(range(len(records['img_ids'])))
    assert ap_of_sample(records, sample) == pytest.approx(coco_ap50(gt2, dets2), abs=1e-12)


def test_bootstrap_is_paired_and_gives_a_spread():
    gt, dets = make_fixture(7, num_imgs=30)
    noise = np.random.default_rng(1).random(len(dets))  # reorders the scores
    worse = [dict(d, score=d['score'] * 0.5 + 0.5 * n) for d, n in zip(dets, noise)]
    aps = bootstrap_aps(dict(a=image_records(gt, dets), b=image_records(gt, dets),
                             c=image_records(gt, worse)), num_samples=200, seed=0)
    np.testing.assert_array_equal(aps['a'], aps['b'])  # same samples for every model
    lo, hi = interval(aps['a'])
    assert lo < hi and lo <= coco_ap50(gt, dets) <= hi
    assert not np.array_equal(aps['a'], aps['c'])


def test_different_image_sets_are_refused():
    gt, dets = make_fixture(0)
    other = dict(gt, images=gt['images'][:-1])
    with pytest.raises(ValueError, match='different image sets'):
        bootstrap_aps(dict(a=image_records(gt, dets), b=image_records(
            other, [d for d in dets if d['image_id'] != gt['images'][-1]['id']])), 10)
