"""tools/analysis_tools/train_memory.py on the tiny model: measured step, estimate, comparison,
bad input."""
import math
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FROZEN, FULL = 'sam3/sam3_vit-l_frozen-towers_1xb1-1k_coco.py', 'sam3/sam3_vit-l_full-ft_1xb1-1k_rf100-vl.py'


SHAPES = 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py'
MIB = 2**20


def _args(name, bpe_path, *extra):
    return [osp.join(REPO, 'configs', name), '--size', 'tiny', '--device', 'cpu', '--bpe-path',
            bpe_path, *extra, '--cfg-options', 'model.decoder.num_layers=1']


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
        result = train_memory.main(_args(name, bpe_path, '--measure'))
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



def test_estimate_breakdown_follows_the_config(bpe_path, capsys):
    """fp32 AdamW: parameters 4 B, gradients 4 B per trainable parameter, state 8 B or more;
    FSDP shares shrink with the number of GPUs; a batch of 2 needs more than a batch of 1."""
    import train_memory

    est = train_memory.main(_args(SHAPES, bpe_path, '--world-size', '2'))
    out = capsys.readouterr().out
    assert 'ESTIMATE' in out and 'FSDP over 2 GPUs' in out and 'Optstate' in out
    assert est.precision == 'float32' and est.batch_size == 2 and est.input_size == 168
    one = est.fsdp_peaks[1]
    assert est.peak_mib == pytest.approx(est.fsdp_peaks[2])
    assert est.fsdp_peaks[8] < est.fsdp_peaks[4] < est.fsdp_peaks[2] < one
    # the parameters' share per GPU with 2 GPUs, as the parameter count says
    assert est.breakdown['Parameter'] * 2 == pytest.approx(est.params_m * 1e6 * 4 / MIB, rel=0.02)
    assert est.breakdown['FSDP gathered units'] > 0
    single = train_memory.main(_args(SHAPES, bpe_path, '--batch-size', '1'))
    assert single.batch_size == 1 and single.peak_mib < one
    assert 'backbone' in [m[0] for m in single.modules]
    # a tiny model on one GPU peaks in the optimizer step: weights, gradients (of the trainable
    # parameters this step uses: no exemplar boxes, so part of the geometry encoder idles) and
    # AdamW's two moments per gradient
    grads = single.breakdown['Gradient']
    assert 0.9 * single.trainable_m * 1e6 * 4 / MIB <= grads
    assert grads <= single.trainable_m * 1e6 * 4 / MIB + 1
    assert single.breakdown['Optstate'] >= 2 * grads


def test_estimate_matches_a_measured_cpu_step(bpe_path, capsys):
    """The estimate of the tiny fine-tune step against a real CPU step of the same config: the
    live tensors of the real step (MemTracker on real tensors) within 15 %; the process's peak
    resident set also holds interpreter and allocator memory the estimate does not model."""
    import train_memory

    result = train_memory.main(_args(FULL, bpe_path, '--compare'))
    out = capsys.readouterr().out
    assert f"= {result['ratio']:.3f} (process peak RSS" in out
    assert 0.85 <= result['tensor_ratio'] <= 1.15, out
    if 'VmHWM' in result['measured']['measure']:
        assert 0.5 <= result['ratio'] <= 1.15, out


def test_global_batch_must_divide_by_world_size():
    import train_memory

    with pytest.raises(SystemExit, match='not divisible by --world-size 4'):
        train_memory.parse_args(['x.py', '--world-size', '4', '--global-batch-size', '6'])
    assert train_memory.parse_args(['x.py', '--world-size', '4',
                                    '--global-batch-size', '8']).batch_size == 2


def test_unknown_config_key_is_refused(bpe_path):
    import train_memory

    from mmsam3.utils.config_keys import UnknownConfigKeyError
    with pytest.raises(UnknownConfigKeyError, match="no key 'with_cpp'. Did you mean with_cp"):
        train_memory.main([osp.join(REPO, 'configs', SHAPES), '--bpe-path', bpe_path,
                           '--cfg-options', 'model.backbone.with_cpp=True'])


@pytest.mark.slow
def test_estimate_matches_a_measured_sam3_small_step(bpe_path, capsys):
    """SAM3-Small XS fine-tune at its real size (672 px, 235 M parameters, text tower frozen):
    estimate vs the process's peak resident set of a real CPU step (about 4 minutes, 4 GB)."""
    import train_memory

    result = train_memory.main([
        osp.join(REPO, 'configs', 'sam3_small', 'sam3-small-xs_vit8-768_672_ft_1xb1-1k_coco.py'),
        '--bpe-path', bpe_path, '--compare'])
    out = capsys.readouterr().out
    assert 0.85 <= result['tensor_ratio'] <= 1.15, out
    if 'VmHWM' in result['measured']['measure']:
        assert 0.85 <= result['ratio'] <= 1.15, out
