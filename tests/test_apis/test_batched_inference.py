"""Several images per forward (mmdet's DetInferencer ``batch_size``) equal one at a time."""
import numpy as np

from tests.test_apis.conftest import draw_image


def test_det_inferencer_batch_equals_one_at_a_time(tiny_cfg, tiny_ckpt, tmp_path):
    import mmsam3  # noqa: F401
    from mmdet.apis import DetInferencer

    # different sizes and contents; the zero-shot pipeline resizes all to the same square
    images = [draw_image(tmp_path / f'{i}.png', size=size, seed=i)
              for i, size in enumerate([(100, 150), (120, 90), (168, 168)])]
    inferencer = DetInferencer(model=tiny_cfg, weights=tiny_ckpt, device='cpu',
                               show_progress=False)
    calls = []
    inferencer.model.backbone.register_forward_hook(
        lambda module, args, output: calls.append(args[0].shape[0]))
    kwargs = dict(texts='red box . green circle', pred_score_thr=0.0, return_datasamples=True)
    single = inferencer(images, batch_size=1, **kwargs)['predictions']
    batched = inferencer(images, batch_size=3, **kwargs)['predictions']
    assert calls == [1, 1, 1, 3]  # really one forward for the three images
    for one, many in zip(single, batched):
        a, b = one.pred_instances, many.pred_instances
        assert len(a) == len(b) == 40
        np.testing.assert_array_equal(a.labels.numpy(), b.labels.numpy())
        np.testing.assert_allclose(a.scores.numpy(), b.scores.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(a.bboxes.numpy(), b.bboxes.numpy(), rtol=0, atol=1e-3)
        assert a.masks.shape == b.masks.shape == (40, *one.ori_shape)
        assert (a.masks != b.masks).float().mean() < 1e-3
