"""SAM3Predictor: image once, prompts many; same results as mmdet's DetInferencer."""
import sys
import os.path as osp

import numpy as np
import pytest
import torch

from tests.test_apis.conftest import REPO, draw_image, write_tiny_infer_config

PHRASES = 'red box . green circle'


@pytest.fixture(scope='module')
def predictor(tiny_cfg, tiny_ckpt):
    import mmsam3  # noqa: F401
    from mmsam3.apis import SAM3Predictor

    return SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu')


def _inferencer_prediction(cfg, ckpt, image, texts):
    from mmdet.apis import DetInferencer

    inferencer = DetInferencer(model=cfg, weights=ckpt, device='cpu', show_progress=False)
    return inferencer(image, texts=texts, pred_score_thr=0.0)['predictions'][0]


def _decode(rles):
    from pycocotools import mask as mask_util

    return np.stack([mask_util.decode(dict(size=r['size'], counts=r['counts'].encode()))
                     for r in rles]).astype(bool)


def test_predictor_equals_det_inferencer(predictor, tiny_cfg, tiny_ckpt, image):
    expected = _inferencer_prediction(tiny_cfg, tiny_ckpt, image, PHRASES)
    predictor.set_image(image)
    got = predictor.predict(texts=PHRASES)
    # every query of both prompts (2 x 20), in the same order
    assert len(got['scores']) == len(expected['scores']) == 40
    np.testing.assert_array_equal(got['labels'], expected['labels'])
    np.testing.assert_allclose(got['scores'], expected['scores'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got['bboxes'], expected['bboxes'], rtol=0, atol=1e-4)
    masks = _decode(expected['masks'])
    assert got['masks'].shape == masks.shape == (40, 100, 150)
    assert (got['masks'] != masks).mean() < 1e-4
    assert set(got['label_names']) == {'red box', 'green circle'}


def test_predictor_with_exemplar_boxes_equals_demo_path(predictor, tiny_cfg, tiny_ckpt, image):
    """Text + a positive and a negative exemplar box: the predictor against tools/demo.py's
    single-shot path (the pipeline, then ``model.test_step``)."""
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import demo
    from mmdet.apis import init_detector
    from mmengine.config import Config

    cfg = Config.fromfile(tiny_cfg)
    model = init_detector(cfg, tiny_ckpt, device='cpu')
    boxes = np.array([[30, 20, 90, 60], [100, 50, 135, 90]], np.float32)
    labels = [1, 0]
    expected = demo.run(model, cfg, image, ['red box'], boxes, labels).pred_instances
    predictor.set_image(image)
    got = predictor.predict(texts=['red box'], boxes=boxes, box_labels=labels,
                            return_datasample=True).pred_instances
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.bboxes, expected.bboxes, rtol=0, atol=1e-4)
    # box-only prompting uses the official phrase 'visual'
    box_only = predictor.predict(boxes=boxes[:1])
    assert set(box_only['label_names']) == {'visual'}


def test_second_phrase_reuses_image_features_and_text_cache(tiny_cfg, tiny_ckpt, image):
    from mmsam3.apis import SAM3Predictor

    predictor = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu', text_cache_size=2)
    calls = dict(backbone=0, text=0)

    def count(name):
        def hook(module, args, output):
            calls[name] += 1
        return hook

    predictor.model.backbone.register_forward_hook(count('backbone'))
    predictor.model.text_encoder.register_forward_hook(count('text'))
    predictor.set_image(image)
    first = predictor.predict(texts='red box')
    predictor.predict(texts='green circle')
    again = predictor.predict(texts='red box')
    assert calls['backbone'] == 1  # the image tower ran once for three prompts
    assert calls['text'] == 2  # 'red box' the second time came from the cache
    assert predictor.cache_info() == dict(hits=1, misses=2, size=2, maxsize=2)
    np.testing.assert_array_equal(first['scores'], again['scores'])
    # a third phrase evicts the least recently used one ('green circle')
    predictor.predict(texts='blue sky')
    assert list(predictor._text_cache) == ['red box', 'blue sky']
    predictor.predict(texts='red box . green circle')
    assert calls['backbone'] == 1 and calls['text'] == 4


def test_image_inputs_path_array_pil_agree(predictor, image):
    import mmcv
    from PIL import Image

    predictor.set_image(image)
    ref = predictor.predict(texts='red box')
    predictor.set_image(mmcv.imread(image))
    np.testing.assert_array_equal(predictor.predict(texts='red box')['scores'], ref['scores'])
    predictor.set_image(Image.open(image))
    np.testing.assert_array_equal(predictor.predict(texts='red box')['scores'], ref['scores'])
    assert predictor.image_size == (100, 150)


def test_bad_input_errors(tiny_cfg, tiny_ckpt, image, tmp_path):
    from mmsam3.apis import SAM3Predictor

    predictor = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu')
    with pytest.raises(RuntimeError, match=r'set_image\(img\) first'):
        predictor.predict(texts='red box')
    predictor.set_image(image)  # 150 x 100
    with pytest.raises(ValueError, match='outside the 150x100'):
        predictor.predict(texts='red box', boxes=[[10, 10, 300, 200]])  # drawn on a bigger one
    with pytest.raises(ValueError, match='x2 > x1'):
        predictor.predict(texts='red box', boxes=[[50, 10, 20, 40]])
    with pytest.raises(ValueError, match='2 boxes but 1 box_labels'):
        predictor.predict(texts='red box', boxes=[[1, 1, 20, 20], [5, 5, 30, 30]],
                          box_labels=[1])
    with pytest.raises(ValueError, match='needs a phrase'):
        predictor.predict(texts='  ')
    with pytest.raises(TypeError, match='file path, a BGR numpy array or a PIL image'):
        predictor.set_image(42)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        predictor.set_image(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match='unsupported inference dtype .int8.*bfloat16'):
        SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu', dtype='int8')
    bad_cfg = write_tiny_infer_config(tmp_path / 'bad.py', predictor.cfg.model.tokenizer.bpe_path,
                                      dtype='float64')
    with pytest.raises(ValueError, match='unsupported inference dtype .float64'):
        SAM3Predictor(bad_cfg, device='cpu')


def _matched(ref, got, label):
    """Sorted scores of one prompt, and the top box of each."""
    a, b = ref['labels'] == label, got['labels'] == label
    return (np.sort(ref['scores'][a]), np.sort(got['scores'][b]), ref['bboxes'][a][0],
            got['bboxes'][b][0])


def test_bf16_on_cpu_close_to_fp32(tiny_cfg, tiny_ckpt, tmp_path):
    """bf16 autocast (the config switch and the argument) against fp32 on the same image.

    Tolerance: bf16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3 per operation).
    A score is sigmoid(logit) * sigmoid(presence) and the sigmoid's slope is at most 1/4, so a
    logit error of a few units of rounding moves a score by about 1e-3; measured on this model
    1e-3 to 2e-3 (seeds 0-2), so 1e-2 leaves 5x room and still catches a layer run wrongly
    (one fp16/bf16 overflow or a wrong cast moves scores by 0.1 and more). Sorting is
    1-Lipschitz in the max norm, so sorted scores may be compared without matching queries.
    """
    from mmsam3.apis import SAM3Predictor

    image = draw_image(tmp_path / 'bf16.png', seed=3)
    fp32 = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu')
    bf16 = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu', dtype='bf16')
    cfg_bf16 = write_tiny_infer_config(tmp_path / 'bf16.py', fp32.cfg.model.tokenizer.bpe_path,
                                       dtype='bfloat16')
    from_cfg = SAM3Predictor(cfg_bf16, weights=tiny_ckpt, device='cpu')
    assert bf16.dtype == from_cfg.dtype == torch.bfloat16
    ref = fp32.set_image(image).predict(texts=PHRASES)
    got = bf16.set_image(image).predict(texts=PHRASES)
    assert got['scores'].dtype == np.float32 and got['bboxes'].dtype == np.float32
    assert bf16.img_feats[0].dtype == torch.bfloat16  # the towers really ran in bf16
    np.testing.assert_array_equal(from_cfg.set_image(image).predict(texts=PHRASES)['scores'],
                                  got['scores'])
    from mmdet.structures.bbox import bbox_overlaps
    for label in (0, 1):
        s_ref, s_got, b_ref, b_got = _matched(ref, got, label)
        assert np.abs(s_ref - s_got).max() < 1e-2
        assert not np.array_equal(s_ref, s_got)  # not silently fp32
        iou = bbox_overlaps(torch.from_numpy(b_ref)[None], torch.from_numpy(b_got)[None])
        assert float(iou) > 0.95
    assert (ref['masks'] != got['masks']).mean() < 0.02


def test_det_inferencer_bf16_through_config(tiny_ckpt, image, bpe_path, tmp_path):
    """mmdet's DetInferencer, unchanged, in bf16: ``type='MixedPrecisionSAM3'`` + dtype."""
    from mmsam3.apis import SAM3Predictor

    cfg = write_tiny_infer_config(tmp_path / 'mp.py', bpe_path, dtype='bf16',
                                  model_type='MixedPrecisionSAM3')
    expected = _inferencer_prediction(cfg, tiny_ckpt, image, PHRASES)
    predictor = SAM3Predictor(cfg, weights=tiny_ckpt, device='cpu')
    assert predictor.dtype == torch.bfloat16
    got = predictor.set_image(image).predict(texts=PHRASES)
    # Same model and dtype, but the predictor reorders sums (image terms kept from set_image,
    # the text tower without trailing padding), so bf16 rounds differently: a few units of
    # bf16 rounding (2^-9) through the sigmoid, as in test_bf16_on_cpu_close_to_fp32.
    np.testing.assert_allclose(got['scores'], expected['scores'], rtol=0, atol=2e-3)
    fp32 = _inferencer_prediction(write_tiny_infer_config(tmp_path / 'fp32.py', bpe_path),
                                  tiny_ckpt, image, PHRASES)
    assert not np.array_equal(np.asarray(fp32['scores']), np.asarray(expected['scores']))


def test_predictor_on_a_built_model_with_a_model_only_config(bpe_path, image):
    """A model config without pipelines gets the zero-shot one (square resize to img_size)."""
    from mmengine.config import Config

    from mmsam3.apis import SAM3Predictor
    from mmsam3.testing.tiny_model import TINY_CONFIG, build_tiny_sam3

    model = build_tiny_sam3(bpe_path)
    with pytest.raises(ValueError, match='without `model.cfg`'):
        SAM3Predictor(model)
    model.cfg = Config.fromfile(TINY_CONFIG)
    predictor = SAM3Predictor(model)
    types = [type(t).__name__ for t in predictor.pipeline.transforms]
    assert types == ['InferencerLoader', 'TorchvisionResize', 'PackSAM3Inputs']
    result = predictor.set_image(image).predict(texts='red box')
    assert len(result['scores']) == 20 and result['masks'].shape == (20, 100, 150)


def test_prompts_per_run(tiny_cfg, tiny_ckpt, image):
    """One prompt per run on a CPU by default; any chunk size gives the same detections."""
    from mmsam3.apis import SAM3Predictor

    one = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu')
    assert one.prompts_per_run == 1
    many = SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu', prompts_per_run=8)
    texts = PHRASES + ' . blue square'
    a = one.set_image(image).predict(texts=texts)
    b = many.set_image(image).predict(texts=texts)
    np.testing.assert_array_equal(a['labels'], b['labels'])
    np.testing.assert_allclose(a['scores'], b['scores'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a['bboxes'], b['bboxes'], rtol=0, atol=1e-4)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match='prompts_per_run'):
            SAM3Predictor(tiny_cfg, weights=tiny_ckpt, device='cpu', prompts_per_run=bad)


def test_inputs_a_new_user_gets_wrong_are_named(predictor):
    """A float picture in [0, 1], a number as the phrase, None inside the phrases: each a clear
    error, and the predictor keeps the image it had."""
    img = np.zeros((100, 150, 3), np.uint8)
    predictor.set_image(img)
    feats = predictor.img_feats
    with pytest.raises(ValueError, match=r'uint8 in 0\.\.255, got float32 \(values in \[0, 1\]'):
        predictor.set_image(np.full((100, 150, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match='uint8 in 0..255, got float64$'):
        predictor.set_image(np.full((100, 150, 3), 128.0))
    with pytest.raises(TypeError, match='a text prompt is a string .* not int 5'):
        predictor.predict(texts=5)
    with pytest.raises(TypeError, match="text prompt item 1 is NoneType None"):
        predictor.predict(texts=['dog', None])
    assert predictor.img_feats is feats
    assert len(predictor.predict(texts=['dog', 'cat'])['scores']) > 0
