"""PackSAM3Inputs and a full official-style pipeline -> the data contract keys."""
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes

from mmsam3.datasets.transforms import PackSAM3Inputs
from mmsam3.utils import parse_text_prompt


def test_parse_text_prompt():
    assert parse_text_prompt('cat . dog .') == ['cat', 'dog']
    assert parse_text_prompt('red circle') == ['red circle']
    assert parse_text_prompt(('a', 'b')) == ['a', 'b']


def test_pack_from_inferencer_text():
    r = PackSAM3Inputs()(dict(img=np.zeros((14, 14, 3), np.uint8), text='cat . dog .',
                              img_shape=(14, 14)))
    s = r['data_samples']
    assert isinstance(s, DetDataSample) and r['inputs'].shape == (3, 14, 14)
    assert s.texts == ['cat', 'dog'] and s.prompt_labels == [0, 1]
    assert s.text == 'cat . dog .'


def test_pack_prompt_boxes_default_labels():
    r = PackSAM3Inputs()(dict(img=np.zeros((14, 14, 3), np.uint8), texts=['a'],
                              prompt_labels=[3], prompt_boxes=[[[1, 2, 3, 4]]],
                              gt_bboxes=HorizontalBoxes(torch.zeros(0, 4)),
                              gt_bboxes_labels=np.zeros(0, np.int64)))
    s = r['data_samples']
    assert s.prompt_boxes[0].dtype == torch.float32 and s.prompt_boxes[0].shape == (1, 4)
    assert s.prompt_box_labels[0].tolist() == [1] and s.prompt_labels == [3]


def test_full_pipeline_yields_data_contract(tmp_path, coco_factory):
    from mmdet.registry import DATASETS
    from sam3_data_utils import rect_polygon
    cats = [dict(id=1, name='red box'), dict(id=2, name='blue box'), dict(id=3, name='ghost')]
    anns = [dict(image_id=1, category_id=1, bbox=[4, 6, 20, 10],
                 segmentation=rect_polygon(4, 6, 20, 10)),
            dict(image_id=1, category_id=2, bbox=[30, 20, 10, 12],
                 segmentation=rect_polygon(30, 20, 10, 12)),
            dict(image_id=1, category_id=2, bbox=[0, 0, 50, 40], iscrowd=1,
                 segmentation=rect_polygon(0, 0, 50, 40))]
    coco_factory([(1, 40, 50, [(4, 6, 20, 10), (30, 20, 10, 12)])], anns, cats)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='FilterCrowds'),
        dict(type='RandomChoiceResize', scales=[(56, 56), (84, 84)], keep_ratio=False),
        dict(type='RandomOffsetPad', size=112),
        dict(type='FilterAnnotations', min_gt_bbox_wh=(0., 0.), keep_empty=False),
        dict(type='BuildPromptQueries'),
        dict(type='FilterPromptsWithTooManyTargets', max_num_targets=200),
        dict(type='TextQueryToVisual', probability=1.0),
        dict(type='PackSAM3Inputs'),
    ]
    ds = DATASETS.build(dict(type='SAM3PromptCocoDataset', data_root=str(tmp_path),
                             ann_file='annotations/train.json', data_prefix=dict(img='images/'),
                             pipeline=pipeline))
    out = ds[0]
    s = out['data_samples']
    assert out['inputs'].shape == (3, 112, 112) and out['inputs'].dtype == torch.uint8
    assert s.texts == ['red box', 'blue box', 'ghost'] and s.prompt_labels == [0, 1, 2]
    g = s.gt_instances
    assert g.labels.tolist() == [0, 1]  # crowd dropped
    assert g.bboxes.shape == (2, 4) and g.masks.masks.shape == (2, 112, 112)
    assert len(s.ignored_instances) == 0
    for k in range(2):  # each box is the tight box of its mask in the 112 x 112 frame
        ys, xs = np.nonzero(g.masks.masks[k])
        assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                           g.bboxes.tensor[k].numpy(), atol=1.5)
    assert len(s.prompt_boxes) == 3 and s.prompt_boxes[2].shape == (0, 4)
    assert torch.equal(s.prompt_boxes[0][0], g.bboxes.tensor[0])
    for key in ('img_shape', 'ori_shape', 'scale_factor', 'pad_param', 'img_id', 'img_path'):
        assert key in s.metainfo, key
    assert s.img_shape == (112, 112) and s.ori_shape == (40, 50)
    # the mmdet data preprocessor used by the configs gives the official [-1, 1] range
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    pre = DetDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)
    batch = pre(dict(inputs=[out['inputs']], data_samples=[s]), training=True)
    x = batch['inputs']
    assert x.shape == (1, 3, 112, 112) and x.min() >= -1 and x.max() <= 1
    top, _, left, _ = s.pad_param.astype(int).tolist()
    assert (x[0, :, :top] == -1).all() and (x[0, :, :, :left] == -1).all()
    assert isinstance(batch['data_samples'][0].gt_instances.bboxes, torch.Tensor)
