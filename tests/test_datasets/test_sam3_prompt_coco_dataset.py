"""SAM3PromptCocoDataset: layouts, classes, masks, negatives and bad-data messages."""
import json
import os
import os.path as osp
import random

import numpy as np
import pytest
from sam3_data_utils import draw_image, rect_polygon, write_json
from mmdet.registry import DATASETS
from pycocotools import mask as mask_utils

from mmsam3.datasets import SAM3PromptCocoDataset, resolve_split_layout

LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]


def build(**kwargs):
    kwargs.setdefault('pipeline', [])
    return DATASETS.build(dict(type='SAM3PromptCocoDataset', **kwargs))


def plain(tmp_path, **kwargs):
    return build(data_root=str(tmp_path), ann_file='annotations/train.json',
                 data_prefix=dict(img='images/'), **kwargs)


# ---------------------------------------------------------------------------- layouts / classes
def test_plain_coco_classes_from_json(tmp_path, basic_coco):
    ds = plain(tmp_path)
    assert len(ds) == 3
    # json order (not id order): what CocoMetric uses to map labels to category ids
    assert ds.metainfo['classes'] == ('cat', 'dog', 'bird')
    assert ds.cat_ids == [5, 2, 9]
    info = ds.get_data_info(0)
    assert info['img_path'] == osp.join(str(tmp_path), 'images', '0001.png')
    assert info['instances'] == [dict(bbox=[10., 10., 30., 40.], bbox_label=1, ignore_flag=0)]
    assert info['prompt_texts'] == ('cat', 'dog', 'bird')
    assert info['num_negative_prompts'] == -1 and info['prompt_all_classes'] is False
    labels = sorted(i['bbox_label'] for i in ds.get_data_info(1)['instances'])
    assert labels == [0, 2]
    assert ds.get_data_info(2)['instances'] == []  # empty image kept (negatives only)
    # mmdet's CocoMetric maps label i to get_cat_ids(cat_names=classes)[i]: same ids, same order
    from mmdet.datasets.api_wrappers import COCO
    assert COCO(basic_coco).get_cat_ids(cat_names=ds.metainfo['classes']) == ds.cat_ids
    assert build(data_root=str(tmp_path), ann_file='annotations/train.json',
                 data_prefix=dict(img='images/'), test_mode=True).get_data_info(0)[
                     'prompt_all_classes'] is True


def test_metainfo_classes_subset_and_reorder(tmp_path, basic_coco):
    ds = plain(tmp_path, metainfo=dict(classes=('bird', 'cat')))
    assert ds.metainfo['classes'] == ('cat', 'bird')  # json order kept
    assert any('reordered' in w for w in ds.load_warnings)
    # the 'dog' annotation is skipped silently (category left out on purpose)
    assert ds.get_data_info(0)['instances'] == []
    with pytest.raises(ValueError, match=r"train\.json.*\['horse'\]"):
        plain(tmp_path, metainfo=dict(classes=('horse', )))


def test_filter_empty_gt(tmp_path, basic_coco):
    assert len(plain(tmp_path, filter_cfg=dict(filter_empty_gt=True))) == 2
    assert len(plain(tmp_path, filter_cfg=dict(filter_empty_gt=True), test_mode=True)) == 3


def roboflow_split(root, split, n_img=2, supercat=True, ann_name='_annotations.coco.json',
                   cat_offset=1):
    cats = ([dict(id=0, name='things-abc', supercategory='none')] if supercat else [])
    cats += [dict(id=cat_offset + k, name=n, supercategory='things-abc')
             for k, n in enumerate(('apple', 'pear'))]
    images, anns = [], []
    for i in range(n_img):
        name = f'img_{i}.jpg'
        draw_image(osp.join(root, split, name), 32, 48, [(4, 4, 10, 12)])
        images.append(dict(id=i, file_name=name, height=32, width=48))
        anns.append(dict(id=i, image_id=i, category_id=cat_offset + i % 2, bbox=[4, 4, 10, 12],
                         area=120, iscrowd=0, segmentation=[]))
    write_json(osp.join(root, split, ann_name),
               dict(images=images, annotations=anns, categories=cats))


def test_roboflow_layout_keeps_supercategory_like_official(tmp_path):
    root = str(tmp_path / 'rf')
    roboflow_split(root, 'train', 4)
    roboflow_split(root, 'valid', 2)
    ds = build(data_root=root, split='train')
    assert ds.ann_file == osp.join(root, 'train', '_annotations.coco.json')
    assert len(ds) == 4
    assert ds.metainfo['classes'] == ('things-abc', 'apple', 'pear')
    assert ds.get_data_info(0)['img_path'] == osp.join(root, 'train', 'img_0.jpg')
    assert ds.get_data_info(1)['instances'][0]['bbox_label'] == 2
    assert 'mask' not in ds.get_data_info(0)['instances'][0]  # empty segmentation: box only
    ds = build(data_root=root, split='valid', drop_unused_supercategory=True, test_mode=True)
    assert ds.metainfo['classes'] == ('apple', 'pear') and len(ds) == 2
    assert ds.get_data_info(1)['instances'][0]['bbox_label'] == 1
    assert resolve_split_layout(root, 'valid') == dict(
        ann_file=osp.join(root, 'valid', '_annotations.coco.json'),
        data_prefix=dict(img=osp.join(root, 'valid') + '/'))
    with pytest.raises(FileNotFoundError, match=r"test/_annotations\.coco\.json.*split='test'"):
        build(data_root=root, split='test')


def test_odinw_layout_zero_based_ids(tmp_path):
    root = str(tmp_path / 'odinw' / 'Aquarium')
    roboflow_split(root, 'train', 2, supercat=False, ann_name='fewshot_train_shot10_seed300.json',
                   cat_offset=0)
    ds = build(data_root=root, split='train', ann_name='fewshot_train_shot10_seed300.json',
               prompt_map="[{'id': 0, 'name': 'green apple'}, {'id': 1, 'name': 'pear'}]")
    assert ds.cat_ids == [0, 1]
    assert ds.get_data_info(0)['prompt_texts'] == ('green apple', 'pear')
    assert ds.metainfo['classes'] == ('apple', 'pear')


def test_prompt_map_by_name(tmp_path, basic_coco):
    ds = plain(tmp_path, prompt_map=dict(cat='small cat', horse='x'))
    assert ds.prompt_texts == ('small cat', 'dog', 'bird')
    assert any('horse' in w for w in ds.load_warnings)


def test_num_images_subset_matches_official_rule(tmp_path, coco_factory):
    images = [(i, 8, 8, []) for i in range(10, 0, -1)]  # ids written in reverse order
    coco_factory(images, [], [dict(id=1, name='a')])
    ds = plain(tmp_path, num_images=4)
    ids = sorted(range(1, 11))
    order = list(range(10))
    random.Random(10).shuffle(order)
    assert sorted(ds.get_data_info(i)['img_id'] for i in range(4)) == sorted(
        ids[i] for i in order[:4])


# ---------------------------------------------------------------------------- masks / box-only
def test_masks_polygon_and_rle(tmp_path, coco_factory):
    h, w = 40, 50
    m = np.zeros((h, w), np.uint8)
    m[20:30, 25:45] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle_str = dict(size=[h, w], counts=rle['counts'].decode())
    # uncompressed RLE: column-major run lengths
    flat = m.flatten(order='F')
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    anns = [dict(image_id=1, category_id=1, bbox=[5, 5, 10, 8],
                 segmentation=rect_polygon(5, 5, 10, 8)),
            dict(image_id=1, category_id=1, bbox=[25, 20, 20, 10], segmentation=rle_str),
            dict(image_id=2, category_id=1, bbox=[25, 20, 20, 10],
                 segmentation=dict(size=[h, w], counts=runs))]
    coco_factory([(1, h, w, [(5, 5, 10, 8), (25, 20, 20, 10)]), (2, h, w, [(25, 20, 20, 10)])],
                 anns, [dict(id=1, name='box')])
    pipe = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True)]
    ds = plain(tmp_path, pipeline=pipe)
    r = ds[0]
    masks = r['gt_masks'].masks
    assert masks.shape == (2, h, w)
    drawn = r['img'].sum(-1) > 0
    for k in range(2):
        x1, y1, x2, y2 = r['gt_bboxes'].tensor[k].int().tolist()
        ys, xs = np.nonzero(masks[k])
        assert xs.min() >= x1 - 1 and xs.max() <= x2 and ys.min() >= y1 - 1 and ys.max() <= y2
        assert drawn[masks[k] > 0].mean() > 0.9
    assert (masks[1] == m).all()
    assert (ds[1]['gt_masks'].masks[0] == m).all()


def test_annotation_without_mask_in_mask_json(tmp_path, coco_factory):
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[2, 2, 6, 6],
                 segmentation=rect_polygon(2, 2, 6, 6)),
            dict(id=2, image_id=1, category_id=1, bbox=[10, 10, 5, 4])]
    coco_factory([(1, 20, 20, [])], anns, [dict(id=1, name='a')])
    pipe = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
    ds = plain(tmp_path, pipeline=pipe)
    assert any('without segmentation' in w and '2' in w for w in ds.load_warnings)
    m = ds[0]['gt_masks'].masks[1]
    assert m[10:14, 10:15].all() and m.sum() >= 20


def test_box_only_with_mask_false(tmp_path, basic_coco):
    ds = plain(tmp_path, pipeline=LOAD)
    r = ds[1]
    assert 'gt_masks' not in r
    assert r['gt_bboxes'].tensor.tolist() == [[5, 5, 15, 15], [30, 30, 45, 40]]


# ---------------------------------------------------------------------------- negatives
def test_negative_prompt_sampling(tmp_path, coco_factory):
    cats = [dict(id=k, name=f'c{k}') for k in range(1, 7)]
    coco_factory([(1, 20, 20, [])], [dict(image_id=1, category_id=2, bbox=[1, 1, 5, 5])], cats)
    pipe = LOAD + [dict(type='BuildPromptQueries')]

    def texts(**kw):
        return plain(tmp_path, pipeline=pipe, **kw)[0]['texts']

    assert texts() == [f'c{k}' for k in range(1, 7)]  # -1: all absent categories
    assert texts(num_negative_prompts=0) == ['c2']
    np.random.seed(0)
    ds = plain(tmp_path, pipeline=pipe, num_negative_prompts=2)
    seen = set()
    for _ in range(30):
        r = ds[0]
        assert len(r['texts']) == 3 and 'c2' in r['texts']
        assert r['prompt_labels'] == sorted(r['prompt_labels'])
        assert [f'c{c + 1}' for c in r['prompt_labels']] == r['texts']
        seen.update(r['texts'])
    assert seen == {f'c{k}' for k in range(1, 7)}  # re-drawn every time the item is loaded
    assert plain(tmp_path, pipeline=pipe, num_negative_prompts=0, test_mode=True)[0][
        'prompt_labels'] == list(range(6))
    with pytest.raises(ValueError, match='num_negative_prompts'):
        plain(tmp_path, num_negative_prompts=-2)


# ---------------------------------------------------------------------------- bad data
def test_missing_image_error_and_skip(tmp_path, basic_coco):
    os.remove(tmp_path / 'images' / '0002.png')
    missing = str(tmp_path / 'images' / '0002.png')
    with pytest.raises(FileNotFoundError) as e:
        plain(tmp_path)
    assert missing in str(e.value) and 'train.json' in str(e.value)
    ds = plain(tmp_path, missing_image='skip')
    assert len(ds) == 2
    assert any(missing in w for w in ds.load_warnings)
    assert len(plain(tmp_path, missing_image='ignore')) == 3


def test_zero_area_and_out_of_image_boxes(tmp_path, coco_factory):
    anns = [dict(id=11, image_id=1, category_id=1, bbox=[5, 5, 0, 4]),      # zero width
            dict(id=12, image_id=1, category_id=1, bbox=[5, 5, 4, -1]),     # negative height
            dict(id=13, image_id=1, category_id=1, bbox=[30, 30, 10, 10]),  # wholly outside
            dict(id=14, image_id=1, category_id=1, bbox=[-3, 15, 10, 10]),  # partly outside
            dict(id=15, image_id=1, category_id=1, bbox=[2, 2, 6, 6])]      # fine
    coco_factory([(1, 20, 20, [])], anns, [dict(id=1, name='a')])
    ds = plain(tmp_path)
    bboxes = [i['bbox'] for i in ds.get_data_info(0)['instances']]
    assert bboxes == [[0., 15., 7., 20.], [2., 2., 8., 8.]]
    warn = '\n'.join(ds.load_warnings)
    assert 'zero-area' in warn and '11, 12' in warn
    assert 'wholly outside' in warn and '13' in warn
    assert 'clipped' in warn and '14' in warn
    assert 'train.json' in warn


def test_unknown_category_id_names_ann_and_category(tmp_path, coco_factory):
    coco_factory([(1, 20, 20, [])],
                 [dict(id=77, image_id=1, category_id=42, bbox=[1, 1, 5, 5])],
                 [dict(id=1, name='a')])
    with pytest.raises(ValueError, match=r'train\.json.*annotation id 77.*category_id 42'):
        plain(tmp_path)


def test_orphan_annotation_skipped_with_warning(tmp_path, coco_factory):
    coco_factory([(1, 20, 20, [])],
                 [dict(id=5, image_id=99, category_id=1, bbox=[1, 1, 5, 5])],
                 [dict(id=1, name='a')])
    ds = plain(tmp_path)
    assert len(ds) == 1 and any('image_id' in w and '5' in w for w in ds.load_warnings)


@pytest.mark.parametrize('content,pattern', [
    ('{"images": [', r'train\.json: not valid JSON'),
    ('[1, 2]', r'train\.json: not a COCO json: top level is a list'),
    ('{"annotations": []}', r"train\.json: not a COCO json: missing key\(s\) \['images', "
                            r"'categories'\]"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "categories": []}',
     r"train\.json: images\[0\] \(id 1\) is missing \['width', 'height'\]"),
    ('{"images": [], "categories": [{"id": 1, "name": "a"}], '
     '"annotations": [{"id": 3, "image_id": 1, "category_id": 1}]}',
     r"train\.json: annotation id 3 is missing \['bbox'\]"),
    ('{"images": [], "categories": [{"id": 1, "name": "a"}], '
     '"annotations": [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 2]}]}',
     r'train\.json: annotation id 3: bbox must be 4 numbers'),
    ('{"images": [], "categories": [{"id": 1}]}', r"train\.json: categories\[0\] needs 'id' and"),
    ('{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}',
     r"train\.json: duplicate category names \{'a': \[1, 2\]\}"),
])
def test_corrupt_json_messages(tmp_path, content, pattern):
    os.makedirs(tmp_path / 'annotations')
    (tmp_path / 'annotations' / 'train.json').write_text(content)
    with pytest.raises(ValueError, match=pattern):
        plain(tmp_path)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'annotation file not found: .*train\.json'):
        plain(tmp_path)


def test_duplicate_annotation_ids(tmp_path, coco_factory):
    coco_factory([(1, 20, 20, [])],
                 [dict(id=4, image_id=1, category_id=1, bbox=[1, 1, 5, 5]),
                  dict(id=4, image_id=1, category_id=1, bbox=[2, 2, 5, 5])],
                 [dict(id=1, name='a')])
    with pytest.raises(ValueError, match=r'train\.json: annotation ids are not unique.*4'):
        plain(tmp_path)


def test_serialized_items_pickle_roundtrip(tmp_path, basic_coco):
    ds = plain(tmp_path, serialize_data=True)
    assert json.dumps(ds.get_data_info(1)['instances'])  # plain python types
    assert isinstance(ds, SAM3PromptCocoDataset)
