"""tools/misc/print_config.py: the merged config (bases + --cfg-options), printed and saved."""
import importlib.util
import os.path as osp

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')


@pytest.fixture(scope='module')
def print_config():
    spec = importlib.util.spec_from_file_location(
        'print_config', osp.join(REPO, 'tools', 'misc', 'print_config.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prints_and_saves_merged_config(print_config, tmp_path, capsys):
    save = str(tmp_path / 'out' / 'merged.py')
    cfg = print_config.main([CONFIG, '--cfg-options', 'train_cfg.max_iters=7',
                             'model.backbone.depth=3', '--save-path', save])
    out = capsys.readouterr().out
    assert out.startswith('Config:\n')
    assert 'max_iters=7' in out and 'depth=3' in out
    # values that only the _base_ files hold are printed too
    assert "type='SAM3ViT'" in out and "type='DetDataPreprocessor'" in out
    assert "default_scope = 'mmdet'" in out
    reloaded = Config.fromfile(save)
    assert reloaded.train_cfg.max_iters == 7 and reloaded.model.backbone.depth == 3
    assert reloaded.to_dict() == cfg.to_dict()
    original = Config.fromfile(CONFIG)
    assert original.train_cfg.max_iters != 7
    assert reloaded.model.backbone.num_heads == original.model.backbone.num_heads


def test_bad_save_suffix(print_config):
    with pytest.raises(SystemExit):
        print_config.main([CONFIG, '--save-path', 'merged.txt'])
