"""tools/analysis_tools/train_memory.py on the tiny model (CPU smoke test)."""
import math
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FROZEN, FULL = 'sam3/sam3_vit-l_frozen-towers_1xb1-1k_coco.py', 'sam3/sam3_vit-l_full-ft_1xb1-1k_rf100-vl.py'


def _args(name, bpe_path):
    return [osp.join(REPO, 'configs', name), '--size', 'tiny', '--device', 'cpu', '--bpe-path',
            bpe_path, '--cfg-options', 'model.decoder.num_layers=1']


def build_tiny_mask_head():
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny.py'))
    return MODELS.build(cfg.model.bbox_head.mask_head)


def test_train_memory_tiny(bpe_path, capsys):
    import train_memory

    results = {}
    for name in (FROZEN, FULL):
        result = train_memory.main(_args(name, bpe_path))
        out = capsys.readouterr().out
        assert f"peak memory ({result['measure']}): {result['peak_mb']:.1f} MiB" in out
        assert result['input_size'] == 168
        assert math.isfinite(result['loss']) and result['loss'] > 0
        assert 0 < result['trainable_m'] < result['params_m']
        assert result['peak_mb'] >= result['peak_above_weights_mb']
        if 'VmHWM' in result['measure']:
            # The peak is reset before each step, so the second config measured in this
            # process is not hidden by the first one's higher peak: the step itself allocates
            # activations, gradients and AdamW state.
            assert result['peak_above_weights_mb'] > 1.0, result
        assert any('AmpOptimWrapper' in n for n in result['notes'])
        results[name] = result
    # Same model, except that the box-only full fine-tune has no mask head.
    mask_head_m = sum(p.numel() for p in build_tiny_mask_head().parameters()) / 1e6
    assert results[FROZEN]['params_m'] == pytest.approx(results[FULL]['params_m'] + mask_head_m)
    assert results[FROZEN]['trainable_m'] < results[FULL]['trainable_m']  # frozen towers

