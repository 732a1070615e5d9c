"""FilterCrowds, mmdet FilterAnnotations (degenerate boxes), BuildPromptQueries,
FilterPromptsWithTooManyTargets and TextQueryToVisual."""
import numpy as np
import pytest
import torch
from mmdet.datasets.transforms import FilterAnnotations
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from mmsam3.datasets.transforms import (BuildPromptQueries, FilterCrowds,
                                        FilterPromptsWithTooManyTargets, TextQueryToVisual)

TEXTS = ('cat', 'dog', 'bird', 'fish')


def results(labels, boxes=None, crowd=None):
    n = len(labels)
    if boxes is None:
        boxes = [[i, i, i + 5, i + 5] for i in range(n)]
    return dict(gt_bboxes=HorizontalBoxes(np.array(boxes, np.float32).reshape(-1, 4)),
                gt_bboxes_labels=np.array(labels, np.int64),
                gt_ignore_flags=np.array(crowd or [False] * n, bool),
                gt_masks=BitmapMasks(np.zeros((n, 8, 8), np.uint8), 8, 8),
                prompt_texts=TEXTS, img_path='x.png')


def test_filter_crowds():
    r = FilterCrowds()(results([0, 1, 2], crowd=[False, True, False]))
    assert r['gt_bboxes_labels'].tolist() == [0, 2] and len(r['gt_masks']) == 2
    assert len(r['gt_bboxes']) == 2 and not r['gt_ignore_flags'].any()


def test_filter_annotations_removes_degenerate_boxes():
    r = results([0, 1], boxes=[[1, 1, 1, 5], [1, 1, 4, 5]])
    r = FilterAnnotations(min_gt_bbox_wh=(0., 0.), keep_empty=False)(r)
    assert r['gt_bboxes_labels'].tolist() == [1]
    r = FilterAnnotations(min_gt_bbox_wh=(0., 0.), keep_empty=False)(
        results([0], boxes=[[1, 1, 1, 1]]))
    assert r is not None and len(r['gt_bboxes_labels']) == 0  # image kept: negatives only


def test_build_prompt_queries_modes():
    r = BuildPromptQueries()(results([2, 0, 2]))
    assert r['prompt_labels'] == [0, 1, 2, 3] and r['texts'] == list(TEXTS)
    r = BuildPromptQueries(num_negative_prompts=0)(results([2, 0, 2]))
    assert r['prompt_labels'] == [0, 2] and r['texts'] == ['cat', 'bird']
    r = BuildPromptQueries(num_negative_prompts=1)(results([2]))
    assert len(r['prompt_labels']) == 2 and 2 in r['prompt_labels']
    # crowd-only categories are not positives
    r = BuildPromptQueries(num_negative_prompts=0)(results([1, 3], crowd=[True, False]))
    assert r['prompt_labels'] == [3]
    # dataset values are used when the transform leaves them unset
    res = results([1])
    res.update(num_negative_prompts=0)
    assert BuildPromptQueries()(res)['prompt_labels'] == [1]
    res = results([])
    res.update(prompt_all_classes=True)
    assert BuildPromptQueries()(res)['prompt_labels'] == [0, 1, 2, 3]
    # nothing to prompt in training -> None (the dataset draws another image)
    assert BuildPromptQueries(num_negative_prompts=0)(results([])) is None
    r = BuildPromptQueries(classes=('a', 'b'), prompt_map={'b': 'a bee'})(
        dict(gt_bboxes_labels=np.array([1])))
    assert r['texts'] == ['a', 'a bee']
    with pytest.raises(KeyError, match='prompt_texts'):
        BuildPromptQueries()(dict(gt_bboxes_labels=np.array([0])))
    with pytest.raises(ValueError, match=r'out of range.*x\.png'):
        BuildPromptQueries()(results([7]))


def test_filter_prompts_with_too_many_targets():
    r = BuildPromptQueries(num_negative_prompts=1)(results([0, 0, 0, 1]))
    r['prompt_boxes'] = [torch.zeros(0, 4) for _ in r['prompt_labels']]
    n_prompts = len(r['prompt_labels'])
    r = FilterPromptsWithTooManyTargets(max_num_targets=2)(r)
    assert 0 not in r['prompt_labels'] and len(r['prompt_labels']) == n_prompts - 1
    assert len(r['texts']) == len(r['prompt_boxes']) == n_prompts - 1
    assert r['gt_bboxes_labels'].tolist() == [1] and len(r['gt_masks']) == 1
    r = BuildPromptQueries(num_negative_prompts=0)(results([0, 0, 0]))
    assert FilterPromptsWithTooManyTargets(max_num_targets=2)(r) is None
    r = BuildPromptQueries()(results([0] * 3))
    assert FilterPromptsWithTooManyTargets(max_num_targets=3)(r)['prompt_labels'] == [0, 1, 2, 3]


def test_text_query_to_visual():
    np.random.seed(0)
    res = BuildPromptQueries()(results([0, 2, 2], boxes=[[0, 0, 4, 4], [5, 5, 9, 9],
                                                        [10, 10, 20, 20]]))
    r = TextQueryToVisual(probability=1.0, keep_text=False)(res)
    assert r['texts'] == ['visual', 'dog', 'visual', 'fish']
    assert r['prompt_boxes'][0].tolist() == [[0, 0, 4, 4]]
    assert r['prompt_boxes'][2].tolist() in ([[5, 5, 9, 9]], [[10, 10, 20, 20]])
    assert r['prompt_boxes'][1].shape == (0, 4) and r['prompt_box_labels'][1].shape == (0, )
    assert r['prompt_box_labels'][0].tolist() == [1] and r['prompt_box_labels'][0].dtype == \
        torch.long
    r = TextQueryToVisual(probability=0.0)(BuildPromptQueries()(results([0])))
    assert all(len(b) == 0 for b in r['prompt_boxes']) and r['texts'] == list(TEXTS)
