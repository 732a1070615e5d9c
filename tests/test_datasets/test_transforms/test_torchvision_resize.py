"""TorchvisionResize: the uint8 image resized exactly as Meta's Sam3Processor resizes it."""
import numpy as np
import pytest
import torch

from mmsam3.datasets.transforms import TorchvisionResize


def _photo(h, w, seed=0):
    """A smooth colour image with sensor-like noise (many distinct grey levels)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 37 + yy / 53), 127 + 90 * np.cos(xx / 23 - yy / 41),
                    127 + 80 * np.sin((xx + yy) / 61)], -1)
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _official(rgb, size):
    """Meta's Sam3Processor transform chain up to the uint8 resize."""
    from torchvision.transforms import v2

    chain = v2.Compose([v2.ToDtype(torch.uint8, scale=True), v2.Resize(size=(size, size))])
    return chain(v2.functional.to_image(rgb)).permute(1, 2, 0).numpy()


@pytest.mark.parametrize('shape', [(512, 600), (400, 400), (37, 1100)])
def test_equals_the_official_processor_resize_and_keeps_bgr(shape):
    rgb = _photo(*shape)
    out = TorchvisionResize(scale=(1008, 1008), keep_ratio=False)(dict(img=rgb[..., ::-1].copy()))
    assert out['img'].dtype == np.uint8 and out['img_shape'] == (1008, 1008)
    np.testing.assert_array_equal(out['img'][..., ::-1], _official(rgb, 1008))
    assert out['scale_factor'] == (1008 / shape[1], 1008 / shape[0])


def test_differs_from_cv2_resize_which_it_replaces():
    import mmcv

    rgb = _photo(512, 600)
    ours = TorchvisionResize(scale=(1008, 1008), keep_ratio=False)(dict(img=rgb))['img']
    cv2_img = mmcv.imresize(rgb, (1008, 1008))
    assert 0.05 < (ours != cv2_img).mean() and np.abs(ours.astype(int) - cv2_img).max() == 1


def test_float_backend_is_the_processor_on_a_gpu():
    """torchvision's non-AVX2 / CUDA route: uint8 -> float32 -> interpolate -> clamp -> round."""
    rgb = _photo(300, 200)
    out = TorchvisionResize(scale=(168, 168), keep_ratio=False,
                            backend='tensor-float')(dict(img=rgb))['img']
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), size=(168, 168), mode='bilinear',
        antialias=True, align_corners=False).clamp(0, 255).round().byte()[0].permute(1, 2, 0)
    np.testing.assert_array_equal(out, ref.numpy())


def test_pil_backend_is_the_official_training_resize():
    from PIL import Image
    from torchvision.transforms import functional as F

    rgb = _photo(300, 200)
    out = TorchvisionResize(scale=(480, 480), keep_ratio=False, backend='pil')(dict(img=rgb))
    ref = np.asarray(F.resize(Image.fromarray(rgb), [480, 480]))
    np.testing.assert_array_equal(out['img'], ref)


def test_boxes_follow_and_keep_ratio_works():
    rgb = _photo(100, 200)
    results = dict(img=rgb, gt_bboxes=None)
    from mmdet.structures.bbox import HorizontalBoxes

    results['gt_bboxes'] = HorizontalBoxes(torch.tensor([[10., 20., 110., 60.]]))
    out = TorchvisionResize(scale=(400, 400), keep_ratio=True)(results)
    assert out['img'].shape[:2] == (200, 400)
    torch.testing.assert_close(out['gt_bboxes'].tensor, torch.tensor([[20., 40., 220., 120.]]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match='backend'):
        TorchvisionResize(scale=(8, 8), backend='cv2')
    with pytest.raises(TypeError, match='uint8'):
        TorchvisionResize(scale=(8, 8))(dict(img=np.zeros((4, 4, 3), np.float32)))


def test_every_evaluation_pipeline_uses_it():
    import os.path as osp

    from mmengine.config import Config

    repo = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    for name in ('sam3/sam3_vit-l_zeroshot_coco.py', 'sam3/sam3_vit-l_zeroshot_odinw13.py',
                 'sam3/sam3_vit-l_zeroshot_rf100-vl.py'):
        cfg = Config.fromfile(osp.join(repo, 'configs', name))
        pipeline = cfg.test_dataloader.dataset.get('pipeline') or \
            cfg.test_dataloader.dataset.datasets[0].pipeline
        types = [t['type'] for t in pipeline]
        assert 'TorchvisionResize' in types and 'Resize' not in types, (name, types)
