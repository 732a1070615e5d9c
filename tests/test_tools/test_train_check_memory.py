"""tools/train.py refuses early: --check-memory over budget, FSDP configs that cannot run,
unknown --cfg-options keys."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.utils import free_port

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHAPES = osp.join(REPO, 'configs', 'sam3', 'sam3_tiny_scratch_1xb2-5k_shapes.py')
FSDP_SHAPES = osp.join(REPO, 'configs', 'sam3', 'sam3_tiny_scratch-fsdp_2xb2-5k_shapes.py')
RETINANET = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_retinanet.py')


def _cfg(path, bpe_path):
    import mmsam3  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(path)
    cfg.model.tokenizer.bpe_path = bpe_path
    return cfg


def test_check_memory_refuses_with_estimate_and_levers(bpe_path):
    import train

    from mmsam3.utils.memory_levers import LEVERS
    from mmsam3.utils.train_memory_estimate import estimate_train_memory, gpu_gib
    # bf16 and checkpointing already on: freezing the towers is the first lever tried
    cfg = dict(LEVERS)['activation checkpointing in every trainable stack'](
        dict(LEVERS)['bf16 autocast'](_cfg(SHAPES, bpe_path)))
    base = estimate_train_memory(cfg)
    frozen = estimate_train_memory(dict(LEVERS)['freeze the image and text towers'](cfg))
    assert frozen.peak_mib < base.peak_mib
    budget = (gpu_gib(base.peak_mib) + gpu_gib(frozen.peak_mib)) / 2
    with pytest.raises(train.MemoryBudgetError) as err:
        train.check_memory(cfg, budget)
    msg = str(err.value)
    assert f'{base.peak_mib / 1024:.2f} GiB allocated' in msg and 'refusing to start' in msg
    assert 'Levers (each on its own)' in msg and 'Enough on its own:' in msg
    # every lever named as enough is one whose own estimate is under the budget
    enough = msg.split('Enough on its own: ')[1].rstrip('.').split(', ')
    lines = {line.split('  ')[1].strip(): line for line in msg.splitlines() if '  fits' in line}
    assert enough and set(enough) == set(lines)
    fits = train.check_memory(cfg, gpu_gib(base.peak_mib) + 0.01)
    assert fits.peak_mib == pytest.approx(base.peak_mib, rel=0.01)


def test_check_memory_flag_stops_train_before_the_runner(bpe_path, tmp_path):
    import train

    from mmsam3.utils.train_memory_estimate import estimate_train_memory, gpu_gib
    need = gpu_gib(estimate_train_memory(_cfg(SHAPES, bpe_path)).peak_mib)
    with pytest.raises(SystemExit, match=f'{need:.2f} GiB with CUDA context') as err:
        train.main([SHAPES, '--check-memory', f'{need - 0.005:.3f}', '--work-dir',
                    str(tmp_path / 'w'), '--cfg-options', f'model.tokenizer.bpe_path={bpe_path}'])
    assert 'refusing to start' in str(err.value)
    assert not (tmp_path / 'w').exists()


def test_unknown_cfg_option_key(bpe_path, tmp_path):
    import train

    from mmsam3.utils.config_keys import UnknownConfigKeyError
    with pytest.raises(UnknownConfigKeyError, match='Did you mean batch_size'):
        train.main([SHAPES, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                    'train_dataloader.batchsize=4'])


def test_fsdp_config_errors(bpe_path):
    from mmsam3.engine.fsdp import FSDPConfigError, check_fsdp_config
    cfg = _cfg(FSDP_SHAPES, bpe_path)
    check_fsdp_config(cfg, 'pytorch')
    with pytest.raises(FSDPConfigError, match='tools/dist_train.sh'):
        check_fsdp_config(cfg, 'none')
    no_runner = cfg.copy()
    no_runner.pop('runner_type')
    with pytest.raises(FSDPConfigError, match="runner_type='FlexibleRunner'"):
        check_fsdp_config(no_runner, 'pytorch')
    frozen = cfg.copy()
    frozen.merge_from_dict({'model.frozen_modules': ('text_encoder', ),
                            'strategy.model_wrapper.use_orig_params': False})
    with pytest.raises(FSDPConfigError, match='use_orig_params=True'):
        check_fsdp_config(frozen, 'pytorch')
    no_policy = cfg.copy()
    no_policy.strategy.model_wrapper.auto_wrap_policy = None
    with pytest.raises(FSDPConfigError, match='sam3_fsdp_wrap_policy'):
        check_fsdp_config(no_policy, 'pytorch')


def test_fsdp_refuses_a_model_it_cannot_wrap(tmp_path):
    """A detector without SAM 3 layers: the wrap policy matches nothing, FSDP would hold the
    whole model as one unit; the run stops with the reason (one gloo process)."""
    cfg = tmp_path / 'retinanet_fsdp.py'
    cfg.write_text(f"_base_ = [{RETINANET!r}]\nrunner_type = 'FlexibleRunner'\n"
                   "strategy = dict(type='FSDPStrategy', model_wrapper=dict("
                   "auto_wrap_policy=dict(type='sam3_fsdp_wrap_policy')))\n")
    from tests.utils import make_tiny_coco
    root = make_tiny_coco(str(tmp_path / 'coco'))
    opts = [f'train_dataloader.dataset.data_root={root}/',
            f'val_dataloader.dataset.data_root={root}/',
            f'test_dataloader.dataset.data_root={root}/',
            f'val_evaluator.ann_file={root}/annotations.json',
            f'test_evaluator.ann_file={root}/annotations.json']
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash', osp.join(REPO, 'tools', 'dist_train.sh'), str(cfg), '1',
                           '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'FSDPConfigError' in out and 'found no layer to wrap in RetinaNet' in out, out[-3000:]
