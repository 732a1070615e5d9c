"""The tiny model's numbers against the golden files in ``tests/data/golden`` (no ``sam3``
needed), and the comparison itself: it notices small changes and names what moved."""
import os.path as osp

import pytest
import torch

from mmsam3.testing import golden_outputs as golden

REGENERATE = 'python tests/data/golden/make_golden.py'


def _outputs(name, bpe_path=None):
    if name == 'sam3_tiny':
        return golden.sam3_tiny_outputs(0, bpe_path=bpe_path)
    return golden.RECIPES[name](0)


@pytest.mark.parametrize('name', ['vit', 'fpn', 'text_encoder', 'decoder'])
def test_component_matches_golden(name):
    problems = golden.compare(_outputs(name), golden.load_golden(golden.golden_path(name)))
    assert not problems, (f'{name} moved from its golden file: {problems}; if the change is '
                          f'meant, check parity and run `{REGENERATE} {name}`')


def test_whole_model_matches_golden(bpe_path):
    ref = golden.load_golden(golden.golden_path('sam3_tiny'))
    # Both images' predictions and every component's output are pinned.
    assert {'predict.0.label_counts', 'predict.1.label2.bboxes', 'SAM3Decoder.pred_boxes',
            'SAM3ScoringHead', 'SAM3MaskHead.pred_masks'} <= set(ref)
    problems = golden.compare(_outputs('sam3_tiny', bpe_path), ref)
    assert not problems, (f'the tiny SAM 3 moved from its golden file: {problems}; if the change '
                          f'is meant, check parity and run `{REGENERATE} sam3_tiny`')


def test_golden_files_are_small():
    for name in golden.RECIPES:
        size = osp.getsize(golden.golden_path(name))
        assert size < 16 * 1024, (name, size)


def test_compare_notices_small_changes():
    ref = golden.load_golden(golden.golden_path('vit'))
    outputs = _outputs('vit')
    assert golden.compare(outputs, ref) == {}

    scaled = dict(outputs, **{'vit.0': outputs['vit.0'] * (1 + 1e-4)})
    assert list(golden.compare(scaled, ref)) == ['vit.0']

    shifted = outputs['vit.0'].flatten().clone()
    shifted[0] += 1e-3  # the first element is always sampled
    shifted = shifted.reshape(outputs['vit.0'].shape)
    assert list(golden.compare(dict(outputs, **{'vit.0': shifted}), ref)) == ['vit.0']

    assert 'missing' in golden.compare({'input.image': outputs['input.image']}, ref)['vit.0']
    cropped = dict(outputs, **{'vit.0': outputs['vit.0'][..., :-1]})
    assert 'shape' in golden.compare(cropped, ref)['vit.0']

    other_image = dict(outputs, **{'input.image': torch.zeros_like(outputs['input.image'])})
    assert 'random generator' in golden.compare(other_image, ref)['input.image']

    # Other weights (seed 1) move everything.
    assert 'vit.0' in golden.compare(golden.vit_outputs(1), ref)


def test_exact_values_and_save_load_round_trip(tmp_path):
    outputs = {'mask': torch.tensor([[True, False]]), 'x': torch.linspace(-1, 1, 1000)}
    path = str(tmp_path / 'g.npz')
    golden.save_golden(path, golden.summarize(outputs))
    ref = golden.load_golden(path)
    assert ref['mask']['shape'] == [1, 2] and ref['mask']['exact'].tolist() == [1, 0]
    assert len(ref['x']['sample']) == golden.NUM_SAMPLES
    assert ref['x']['sample'][0] == -1 and ref['x']['sample'][-1] == 1
    assert golden.compare(outputs, ref) == {}
    flipped = dict(outputs, mask=torch.tensor([[True, True]]))
    assert golden.compare(flipped, ref) == {'mask': 'integer / bool values differ'}


def test_detector_weights_equal_standalone_component_weights(bpe_path):
    """A component gets the same weights inside the detector as alone: the seed depends on its
    class, not on its place in the model or its state-dict keys."""
    from mmdet.registry import MODELS

    from mmsam3.testing.tiny_model import tiny_model_cfg

    cfg = tiny_model_cfg(bpe_path)
    model = MODELS.build(cfg)
    golden.seed_detector_weights(model, 0)
    decoder = golden._build_seeded(cfg.decoder, 0)
    for (name, p), (_, q) in zip(model.decoder.named_parameters(), decoder.named_parameters()):
        assert torch.equal(p, q), name
    golden.seed_detector_weights(model, 1)
    assert not torch.equal(next(model.decoder.parameters()), next(decoder.parameters()))

    class WithExtra(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match='extra.weight'):
        golden.seed_detector_weights(WithExtra(), 0)
