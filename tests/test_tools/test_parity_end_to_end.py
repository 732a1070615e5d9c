"""End-to-end parity from the image file: Meta's Sam3Processor vs mmdet's DetInferencer.

Both read the same JPEG, each with its own decode, resize and normalisation, and run the same
(converted) weights; every query of every phrase is kept and compared after sorting by score.
"""
import numpy as np
import pytest

from parity_official import END_TO_END_TOLERANCES, run_end_to_end

pytestmark = pytest.mark.requires_official


def _photo_jpeg(path, h, w, seed):
    """A smooth colour image with sensor-like noise, saved as a JPEG (a photograph stand-in)."""
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 37 + yy / 53), 127 + 90 * np.cos(xx / 23 - yy / 41),
                    127 + 80 * np.sin((xx + yy) / 61)], -1)
    img += np.random.default_rng(seed).normal(0, 6, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return str(path)


def _check(worst):
    for key, tol in END_TO_END_TOLERANCES.items():
        assert worst[key] <= tol, worst


@pytest.mark.parametrize('shape,seed', [((512, 600), 0), ((400, 400), 1)],
                         ids=['512x600', '400x400'])
def test_end_to_end_tiny(tmp_path, bpe_path, shape, seed):
    image = _photo_jpeg(tmp_path / 'photo.jpg', *shape, seed)
    worst = run_end_to_end(image, 'tiny', seed, bpe_path=bpe_path, verbose=True)
    _check(worst)
    assert worst['num_queries'] == 20


@pytest.mark.slow
@pytest.mark.parametrize('shape', [(512, 600), (1008, 1008)], ids=['512x600', '1008x1008'])
def test_end_to_end_full(tmp_path, bpe_path, shape):
    image = _photo_jpeg(tmp_path / 'photo.jpg', *shape, 0)
    worst = run_end_to_end(image, 'full', 0, texts=('red apple', 'dog', 'a car on the road'),
                           bpe_path=bpe_path, verbose=True)
    _check(worst)
    assert worst['num_queries'] == 200
