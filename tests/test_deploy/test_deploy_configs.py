"""Every deploy config of configs/deploy/ loads, and a TensorRT config's optimisation profiles
agree with the graphs its image size gives (hand-written shapes are easy to get wrong)."""
import glob
import os.path as osp

import pytest

from deploy_test_utils import REPO
from mmsam3.deploy import GRAPH_NAMES, load_deploy_cfg, sam3_deploy_settings
from mmsam3.deploy.export_graphs import ALL_GRAPH_NAMES
from mmsam3.deploy.tensorrt_engine_builder import trt_profiles

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'deploy', 'instance-seg*.py')))
TRT_CONFIGS = [c for c in CONFIGS if '_tensorrt' in osp.basename(c)]
INTERACTIVE_CONFIGS = [c for c in TRT_CONFIGS if 'interactive' in osp.basename(c)]


def _same_everywhere(shape):
    return {k: list(shape) for k in ('min_shape', 'opt_shape', 'max_shape')}


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_deploy_config_name_matches_its_settings(path):
    cfg = load_deploy_cfg(path)
    name = osp.basename(path)
    w, h = cfg.onnx_config.input_shape
    assert name.endswith(f'_static-{w}x{h}.py'), name
    assert cfg.backend_config.type in name
    assert ('-fp16' in name) == bool(cfg.backend_config.get('common_config', {}).get('fp16_mode'))
    assert tuple(sam3_deploy_settings(cfg)['input_hw']) == (h, w)


@pytest.mark.parametrize('path', TRT_CONFIGS, ids=osp.basename)
def test_tensorrt_profiles_fit_the_graphs(path):
    cfg = load_deploy_cfg(path)
    settings = sam3_deploy_settings(cfg)
    h, w = settings['input_hw']
    n, k = settings['max_prompts'], settings['max_boxes']
    profiles = trt_profiles(cfg)
    assert set(profiles) == set(GRAPH_NAMES)
    if path in INTERACTIVE_CONFIGS:
        assert set(trt_profiles(cfg, ALL_GRAPH_NAMES)) == set(ALL_GRAPH_NAMES)
    else:
        with pytest.raises(ValueError, match='add a fourth entry for interactive_decoder'):
            trt_profiles(cfg, ALL_GRAPH_NAMES)
    dims = 64 if h == 168 else 256  # the tiny test model, else SAM 3's width
    assert profiles['vision_tower']['image'] == _same_everywhere([1, 3, h, w])
    # neck levels at strides 3.5, 7 and 14 (the ViT's 14 px patches, upsampled x4 / x2 / x1)
    for name, scale in (('feat_s4', 4), ('feat_s8', 2), ('feat_s16', 1)):
        shape = [1, dims, h // 14 * scale, w // 14 * scale]
        assert profiles['prompt_decoder'][name] == _same_everywhere(shape), (name, shape)
    text = profiles['text_tower']['token_ids']
    assert text['min_shape'] == [1, 32] and text['max_shape'] == [n, 32]
    dec = profiles['prompt_decoder']
    assert dec['text_feats']['max_shape'] == [n, 32, dims]
    assert dec['boxes']['max_shape'] == [n, k, 4]
    for key in ('text_mask', 'box_labels', 'box_mask'):
        assert dec[key]['max_shape'][0] == n


@pytest.mark.parametrize('path', INTERACTIVE_CONFIGS, ids=osp.basename)
def test_interactive_decoder_profile_fits_the_graph(path):
    cfg = load_deploy_cfg(path)
    settings = sam3_deploy_settings(cfg)
    h, _ = settings['input_hw']
    dims, grid, p = (64 if h == 168 else 256), h // 14, settings['max_points']
    profile = trt_profiles(cfg, ALL_GRAPH_NAMES)['interactive_decoder']
    assert profile['tracker_embed'] == _same_everywhere([1, dims, grid, grid])
    assert profile['tracker_feat_s4'] == _same_everywhere([1, dims // 8, 4 * grid, 4 * grid])
    assert profile['tracker_feat_s8'] == _same_everywhere([1, dims // 4, 2 * grid, 2 * grid])
    assert profile['mask_input'] == _same_everywhere([1, 1, 4 * grid, 4 * grid])
    assert profile['has_mask_input'] == _same_everywhere([1])
    assert profile['point_coords'] == dict(min_shape=[1, 1, 2], opt_shape=[1, 3, 2],
                                           max_shape=[1, p, 2])
    assert profile['point_labels'] == dict(min_shape=[1, 1], opt_shape=[1, 3],
                                           max_shape=[1, p])
