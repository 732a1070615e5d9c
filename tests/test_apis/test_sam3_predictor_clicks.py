"""SAM3Predictor with the interactive head: clicks, a box and mask prompts on the image set last,
one ViT pass for phrases and clicks, refinement, and bad input (a clear error, nothing changed)."""
import numpy as np
import pytest
import torch

from tests.test_apis.conftest import REPO, draw_image

TINY_INTERACTIVE = f'{REPO}/configs/_base_/models/sam3_tiny_interactive.py'


def write_interactive_config(path, bpe_path):
    path.write_text(
        f"_base_ = ['{TINY_INTERACTIVE}',\n"
        f"          '{REPO}/configs/_base_/datasets/sam3_coco_prompt.py',\n"
        f"          '{REPO}/configs/_base_/default_runtime.py']\n"
        f"model = dict(tokenizer=dict(bpe_path='{bpe_path}'))\n"
        "test_pipeline = [dict(type='LoadImageFromFile'),\n"
        "                 dict(type='Resize', scale=(168, 168), keep_ratio=False),\n"
        "                 dict(type='PackSAM3Inputs')]\n"
        "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    return str(path)


@pytest.fixture(scope='module')
def interactive_cfg(tmp_path_factory, bpe_path):
    return write_interactive_config(tmp_path_factory.mktemp('cfg') / 'tiny_inter.py', bpe_path)


@pytest.fixture(scope='module')
def interactive_ckpt(tmp_path_factory, interactive_cfg):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmsam3.testing.random_weights import randomize_parameters
    init_default_scope('mmdet')
    model = MODELS.build(Config.fromfile(interactive_cfg).model)
    randomize_parameters(model, seed=0)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny_inter.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


@pytest.fixture(scope='module')
def predictor(interactive_cfg, interactive_ckpt):
    from mmsam3.apis import SAM3Predictor

    return SAM3Predictor(interactive_cfg, weights=interactive_ckpt, device='cpu')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return draw_image(tmp_path_factory.mktemp('img') / 'shapes.png')  # 150 x 100


def test_one_vit_pass_serves_phrases_and_clicks(predictor, shapes):
    calls = []
    hook = predictor.model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        predictor.set_image(shapes)
        texts = predictor.predict(texts='red box')
        clicks = predictor.predict(points=[[60, 40]], point_labels=[1])
        again = predictor.predict(texts='red box')
    finally:
        hook.remove()
    assert calls == [1]
    np.testing.assert_array_equal(texts['scores'], again['scores'])
    assert clicks['masks'].shape == (3, 100, 150) and clicks['masks'].dtype == bool
    assert clicks['scores'].shape == (3, ) and clicks['low_res_logits'].shape == (3, 48, 48)
    assert np.abs(clicks['low_res_logits']).max() <= 32
    assert isinstance(clicks['object_score'], float)


def test_prompts_and_refinement(predictor, shapes):
    predictor.set_image(shapes)
    assert predictor.previous_logits is None
    one = predictor.predict(points=[[60, 40]], point_labels=[1], multimask_output=False)
    assert one['masks'].shape == (1, 100, 150)
    kept = predictor.previous_logits.copy()
    np.testing.assert_array_equal(kept, one['low_res_logits'][:1])
    # refine=True feeds the previous logits back as the mask prompt
    refined = predictor.predict(points=[[60, 40], [120, 70]], point_labels=[1, 0],
                                multimask_output=False, refine=True)
    explicit = predictor.predict(points=[[60, 40], [120, 70]], point_labels=[1, 0],
                                 multimask_output=False, mask_input=kept)
    np.testing.assert_array_equal(refined['low_res_logits'], explicit['low_res_logits'])
    plain = predictor.predict(points=[[60, 40], [120, 70]], point_labels=[1, 0],
                              multimask_output=False)
    assert not np.array_equal(plain['low_res_logits'], refined['low_res_logits'])
    box = predictor.predict(box=[30, 20, 90, 60])
    box_click = predictor.predict(box=[30, 20, 90, 60], points=[[60, 40]], point_labels=[0])
    assert box['masks'].shape == box_click['masks'].shape == (3, 100, 150)
    assert not np.array_equal(box['low_res_logits'], box_click['low_res_logits'])
    mask_only = predictor.predict(mask_input=kept, multimask_output=False)
    assert mask_only['masks'].shape == (1, 100, 150)
    # the model-level answer, by hand: clicks scaled to the 168 input (x / w * 168)
    head = predictor.model.interactive_head
    with torch.no_grad():
        out = head(predictor.tracker_feats, torch.tensor([[[60 / 150 * 168, 40 / 100 * 168]]]),
                   torch.tensor([[1]]), None, False)
    np.testing.assert_allclose(one['low_res_logits'], out['low_res_logits'][0].numpy(),
                               atol=1e-6)
    predictor.set_image(shapes)
    assert predictor.previous_logits is None  # a new image starts afresh


def _state(p):
    return (p.tracker_feats, p.img_feats, p._metainfo,
            None if p.previous_logits is None else p.previous_logits.copy())


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(points=[[200, 40]], point_labels=[1]), ValueError, 'outside the 150x100'),
    (dict(points=[[-1, 40]], point_labels=[1]), ValueError, 'outside the 150x100'),
    (dict(points=[[60, 40]], point_labels=[2]), ValueError, 'must be 1 .positive. or 0'),
    (dict(points=[[60, 40]], point_labels=[3]), ValueError, 'corner labels 2 / 3 are internal'),
    (dict(points=[[60, 40]], point_labels=[-1]), ValueError, 'must be 1 .positive. or 0'),
    (dict(points=[[np.nan, 40]], point_labels=[1]), ValueError, 'NaN'),
    (dict(points=[[60, 40]]), ValueError, 'go together'),
    (dict(points=[[60, 40], [10, 10]], point_labels=[1]), ValueError, '2 points but'),
    (dict(box=[90, 20, 30, 60]), ValueError, 'has no area'),
    (dict(box=[30, 20, 30, 60]), ValueError, 'has no area'),
    (dict(box=[30, 20, 90, np.nan]), ValueError, 'NaN'),
    (dict(box=[30, 20, 190, 60]), ValueError, 'outside the 150x100'),
    (dict(mask_input=np.zeros((1, 32, 32))), ValueError, r'\(1, 48, 48\) low-resolution'),
    (dict(mask_input=np.zeros((3, 48, 48))), ValueError, r'\(1, 48, 48\) low-resolution'),
    (dict(texts='red box', points=[[60, 40]], point_labels=[1]), ValueError, 'separate calls'),
])
def test_bad_click_input_is_a_clear_error_and_changes_nothing(predictor, shapes, kwargs, error,
                                                              match):
    predictor.set_image(shapes)
    predictor.predict(points=[[60, 40]], point_labels=[1])
    before = _state(predictor)
    with pytest.raises(error, match=match):
        predictor.predict(**kwargs)
    after = _state(predictor)
    assert after[0] is before[0] and after[1] is before[1] and after[2] is before[2]
    np.testing.assert_array_equal(after[3], before[3])


def test_clicks_before_set_image(interactive_cfg, interactive_ckpt):
    from mmsam3.apis import SAM3Predictor

    fresh = SAM3Predictor(interactive_cfg, weights=interactive_ckpt, device='cpu')
    with pytest.raises(RuntimeError, match=r'set_image\(img\) first'):
        fresh.predict(points=[[10, 10]], point_labels=[1])
    assert fresh.tracker_feats is None and fresh.previous_logits is None


def test_concept_config_asked_for_clicks(tiny_cfg, tiny_ckpt, shapes):
    from mmsam3.apis import SAM3Predictor

    concept = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu')
    concept.set_image(shapes)
    with pytest.raises(RuntimeError, match='no interactive head.*tracker_neck and '
                       'interactive_head'):
        concept.predict(points=[[60, 40]], point_labels=[1])
    with pytest.raises(RuntimeError, match='no interactive head'):
        concept.predict(box=[30, 20, 90, 60])
    assert concept.predict(texts='red box')['scores'].shape == (20, )
