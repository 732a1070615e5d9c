"""Clicks on the deployed tiny SAM 3 with the interactive head: the fourth graph
(``interactive_decoder``) on ONNX Runtime against PyTorch, ``DeployedSAM3.predict(points=...)``
against ``SAM3Predictor.predict(points=...)`` on the same image file, the same bad-input errors,
the manifest and the TensorRT op audit."""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch

from mmsam3.deploy import DeployedSAM3, audit_onnx, read_manifest
from mmsam3.deploy.export_graphs import InteractiveDecoderGraph
from mmsam3.deploy.graph_runners import OnnxRuntimeGraphRunner

TOL = 1e-4


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """A smooth, non-square colour picture (the pipeline resizes it to the 168 px input)."""
    h, w = 150, 200
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 17 + yy / 23), 127 + 90 * np.cos(xx / 13 - yy / 21),
                    127 + 80 * np.sin((xx + yy) / 31)], -1)
    img += np.random.default_rng(0).normal(0, 6, img.shape)
    path = str(tmp_path_factory.mktemp('clicks') / 'photo.png')
    mmcv.imwrite(np.clip(img, 0, 255).astype(np.uint8), path)
    return path


@pytest.fixture(scope='module')
def predictor(interactive_deployment, photo):
    from mmsam3.apis import SAM3Predictor
    model = interactive_deployment.model
    model.cfg = interactive_deployment.cfg
    return SAM3Predictor(model, device='cpu').set_image(photo)


@pytest.fixture(scope='module')
def clicker(interactive_deployment, photo):
    return DeployedSAM3(interactive_deployment.cfg, interactive_deployment.work_dir)\
        .set_image(photo)


def test_deploy_tool_compares_clicks(interactive_deployment):
    """tools/deployment/deploy.py on a model with the interactive head: phrases and clicks
    (--points) through the deployed model and PyTorch, both within tolerance."""
    diff = interactive_deployment.diff
    assert diff['scores'] <= TOL and diff.get('mask_pixels', 0.0) <= 1e-3
    clicks = diff['clicks']
    assert clicks['low_res_logits'] <= TOL and clicks['scores'] <= TOL, clicks
    assert clicks['click_mask_pixels'] <= 1e-3, clicks


def test_manifest_lists_the_interactive_decoder(interactive_deployment):
    manifest = read_manifest(interactive_deployment.work_dir)
    assert list(manifest['graphs']) == ['vision_tower', 'text_tower', 'prompt_decoder',
                                        'interactive_decoder']
    vision = manifest['graphs']['vision_tower']
    assert [o['name'] for o in vision['outputs']] == [
        'feat_s4', 'feat_s8', 'feat_s16', 'tracker_embed', 'tracker_feat_s4', 'tracker_feat_s8']
    # Already projected by conv_s0 / conv_s1: C/8 and C/4 channels of the 64-channel model.
    assert [o['shape'] for o in vision['outputs'][3:]] == [[1, 64, 12, 12], [1, 8, 48, 48],
                                                           [1, 16, 24, 24]]
    dec = manifest['graphs']['interactive_decoder']
    shapes = {i['name']: i['shape'] for i in dec['inputs'] + dec['outputs']}
    assert shapes['point_coords'] == [1, 'num_points', 2]
    assert shapes['point_labels'] == [1, 'num_points']
    assert shapes['mask_input'] == [1, 1, 48, 48] and shapes['has_mask_input'] == [1]
    assert shapes['low_res_logits'] == [1, 4, 48, 48] and shapes['iou_pred'] == [1, 4]
    assert shapes['object_score_logits'] == [1, 1]
    profile = dec['trt_profile']['point_coords']
    assert profile['min_shape'] == [1, 1, 2] and profile['max_shape'] == [1, 32, 2]


def test_interactive_decoder_passes_the_tensorrt_op_audit(interactive_deployment):
    for name in ('interactive_decoder', 'vision_tower'):
        report = audit_onnx(osp.join(interactive_deployment.work_dir, f'{name}.onnx'))
        assert report.ok, report.violations
    ops = audit_onnx(osp.join(interactive_deployment.work_dir,
                              'interactive_decoder.onnx')).rows
    # No data-dependent shapes: the stability choice is Python, labels select with Where.
    assert not {'NonZero', 'ArgMax', 'TopK', 'If', 'Loop', 'ScatterND'} & set(ops)
    assert 'Where' in ops


@pytest.mark.parametrize('num_points,with_mask', [(0, True), (1, False), (2, True), (9, False)],
                         ids=['mask-only', '1-point', '2-points+mask', '9-points'])
def test_graph_equals_the_pytorch_head(interactive_deployment, num_points, with_mask):
    """Every output of the graph against ``SAM3InteractiveHead.forward`` on the same tracker
    features (the head pads the points itself; the graph gets the padding point given)."""
    model = interactive_deployment.model
    head = model.interactive_head
    wd = interactive_deployment.work_dir
    manifest = read_manifest(wd)
    vision = OnnxRuntimeGraphRunner(osp.join(wd, 'vision_tower.onnx'), 'vision_tower',
                                    manifest['graphs']['vision_tower'])
    decoder = OnnxRuntimeGraphRunner(osp.join(wd, 'interactive_decoder.onnx'),
                                     'interactive_decoder',
                                     manifest['graphs']['interactive_decoder'])
    gen = torch.Generator().manual_seed(num_points)
    image = torch.randn(1, 3, 168, 168, generator=gen)
    feats = vision(image=image)
    with torch.no_grad():
        ref_feats = head.image_feats(model.extract_tracker_feat(image))
    for key, name in (('image_embed', 'tracker_embed'), ('feat_s0', 'tracker_feat_s4'),
                      ('feat_s1', 'tracker_feat_s8')):
        assert float((ref_feats[key] - feats[name]).abs().max()) <= TOL, name
    coords = torch.rand(1, num_points, 2, generator=gen) * 168
    labels = torch.randint(0, 4, (1, num_points), generator=gen)
    mask = torch.randn(1, 1, 48, 48, generator=gen) * 4
    with torch.no_grad():
        ref = head(ref_feats, coords if num_points else None,
                   labels.int() if num_points else None, mask if with_mask else None)
    pad = num_points > 0
    got = decoder(tracker_embed=feats['tracker_embed'], tracker_feat_s4=feats['tracker_feat_s4'],
                  tracker_feat_s8=feats['tracker_feat_s8'],
                  point_coords=torch.cat([coords, torch.zeros(1, int(pad), 2)], 1),
                  point_labels=torch.cat([labels, -torch.ones(1, int(pad), dtype=torch.long)],
                                         1),
                  mask_input=mask if with_mask else torch.zeros_like(mask),
                  has_mask_input=torch.tensor([1.0 if with_mask else 0.0]))
    for key, name in (('all_low_res_logits', 'low_res_logits'), ('all_iou_pred', 'iou_pred'),
                      ('object_score_logits', 'object_score_logits')):
        diff = float((ref[key] - got[name]).abs().max())
        assert diff <= TOL, (name, diff)


def test_graph_position_encoding_is_the_heads(interactive_deployment):
    """The grid's position encoding is stored in the wrapper (one initializer), equal to the
    head's."""
    wrapper = InteractiveDecoderGraph(interactive_deployment.model).eval()
    assert torch.equal(wrapper.dense_pe,
                       interactive_deployment.model.interactive_head.prompt_encoder
                       .get_dense_pe())


CASES = [
    ('one positive click', dict(points=[[120, 70]], point_labels=[1])),
    ('positive + negative clicks', dict(points=[[120, 70], [40, 30]], point_labels=[1, 0])),
    ('box', dict(box=[30, 20, 170, 130])),
    ('box + clicks', dict(box=[30, 20, 170, 130], points=[[100, 75]], point_labels=[0])),
]


def _compare(a, b):
    assert a['masks'].shape == b['masks'].shape and a['masks'].dtype == b['masks'].dtype
    diffs = dict(low_res_logits=float(np.abs(a['low_res_logits'] - b['low_res_logits']).max()),
                 scores=float(np.abs(a['scores'] - b['scores']).max()),
                 object_score=abs(a['object_score'] - b['object_score']),
                 mask_pixels=float((a['masks'] != b['masks']).mean()))
    assert diffs['low_res_logits'] <= TOL and diffs['scores'] <= TOL, diffs
    assert diffs['object_score'] <= TOL and diffs['mask_pixels'] <= 1e-3, diffs
    return diffs


@pytest.mark.parametrize('multimask', [True, False], ids=['multi', 'single'])
@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_deployed_clicks_equal_the_predictor(predictor, clicker, case, multimask):
    kwargs = dict(case[1], multimask_output=multimask)
    ref = predictor.predict(**kwargs)
    got = clicker.predict(**kwargs)
    assert got['masks'].shape == (3 if multimask else 1, 150, 200)
    _compare(ref, got)


def test_refine_rounds_and_a_mask_prompt_alone(predictor, clicker):
    """Click, then a correction click with the previous logits (refine), then the chosen mask
    as the only prompt: each round equal to the predictor's, state kept alike."""
    for p in (predictor, clicker):
        p.reset_clicks()
    rounds = [dict(points=[[120, 70]], point_labels=[1]),
              dict(points=[[120, 70], [60, 100]], point_labels=[1, 0], refine=True,
                   multimask_output=False)]
    for kwargs in rounds:
        _compare(predictor.predict(**kwargs), clicker.predict(**kwargs))
        np.testing.assert_allclose(predictor.previous_logits, clicker.previous_logits,
                                   atol=TOL)
    mask = clicker.previous_logits.copy()
    _compare(predictor.predict(mask_input=mask, multimask_output=False),
             clicker.predict(mask_input=mask, multimask_output=False))
    _compare(predictor.predict(refine=True), clicker.predict(refine=True))


def test_single_mask_choice_is_the_decoder_rule(clicker):
    """multimask_output=False gives output 0 where it is stable, else the best multimask one:
    both branches of SAMMaskDecoder.select, checked on the graph's four outputs."""
    decoder = clicker.interactive_head.mask_decoder
    logits = torch.zeros(2, 4, 48, 48)
    logits[:, 0, :10] = 5.0                # output 0: a clean blob (stable) ...
    logits[0, 0, 10:] = -5.0
    logits[1, 0, 10:] = 0.01               # ... unless many pixels sit at the threshold
    logits[:, 2, :20] = 3.0
    iou = torch.tensor([[0.5, 0.1, 0.9, 0.2], [0.5, 0.1, 0.9, 0.2]])
    masks, scores = decoder.eval().select(logits, iou, False)
    assert torch.equal(masks[0, 0], logits[0, 0]) and float(scores[0, 0]) == 0.5
    assert torch.equal(masks[1, 0], logits[1, 2]) and abs(float(scores[1, 0]) - 0.9) < 1e-7


BAD_INPUTS = [
    dict(points=[[500, 10]], point_labels=[1]),                 # outside the image
    dict(points=[[10, 10]], point_labels=[2]),                  # a box-corner label
    dict(points=[[10, 10]], point_labels=[5]),
    dict(points=[[float('nan'), 10]], point_labels=[1]),
    dict(box=[50, 50, 50, 80]),                                 # no area
    dict(mask_input=np.zeros((1, 32, 32), np.float32)),         # wrong size
    dict(points=[[10, 10]]),                                    # labels missing
    dict(),                                                     # no prompt
]


@pytest.mark.parametrize('bad', BAD_INPUTS, ids=[str(sorted(b)) + str(i)
                                                 for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_same_error_nothing_changed(predictor, clicker, bad):
    clicker.predict(points=[[120, 70]], point_labels=[1])
    before = (clicker.previous_logits.copy(), clicker.tracker_feats, clicker.image_size)
    if not bad:  # predict() without any prompt is a batch call missing its batch
        with pytest.raises(ValueError, match='needs a batch .* or interactive prompts'):
            clicker.predict()
        bad = dict(multimask_output=False)
    with pytest.raises(ValueError) as ref:
        predictor.predict_clicks(**bad)
    with pytest.raises(ValueError) as got:
        clicker.predict_clicks(**bad)
    assert str(got.value) == str(ref.value)
    np.testing.assert_array_equal(clicker.previous_logits, before[0])
    assert clicker.tracker_feats is before[1] and clicker.image_size == before[2]


def test_clicks_need_an_image_and_an_interactive_export(interactive_deployment, deployed):
    fresh = DeployedSAM3(interactive_deployment.cfg, interactive_deployment.work_dir)
    with pytest.raises(RuntimeError, match='needs an image: call deployed.set_image'):
        fresh.predict(points=[[10, 10]], point_labels=[1])
    with pytest.raises(RuntimeError, match='no interactive_decoder graph'):
        deployed.predict(points=[[10, 10]], point_labels=[1])
    with pytest.raises(ValueError, match='either a batch .* or interactive prompts'):
        fresh.predict(torch.zeros(1, 3, 168, 168), [], points=[[1, 1]], point_labels=[1])


def test_an_interactive_export_needs_the_interactive_config(interactive_deployment,
                                                            tiny_deployment):
    with pytest.raises(ValueError, match='model config has no interactive_head'):
        DeployedSAM3(tiny_deployment.cfg, interactive_deployment.work_dir)


def test_phrases_still_match_pytorch_on_the_interactive_export(interactive_deployment):
    """The vision graph's extra outputs leave the concept path as it was."""
    from mmdet.structures import DetDataSample
    model = interactive_deployment.model
    deployed = DeployedSAM3(interactive_deployment.cfg, interactive_deployment.work_dir)
    x = torch.randn(1, 3, 168, 168, generator=torch.Generator().manual_seed(3))
    sample = DetDataSample(metainfo=dict(texts=['red circle'], img_shape=(168, 168),
                                         ori_shape=(168, 168), batch_input_shape=(168, 168),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        ref = model._forward(x, [sample])
        got = deployed._forward(x, [sample])
    assert float((ref['logits'][-1:] - got['logits']).abs().max()) <= TOL
    assert float((ref['pred_masks'] - got['pred_masks']).abs().max()) <= TOL
