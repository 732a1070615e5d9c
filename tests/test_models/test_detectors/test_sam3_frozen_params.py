"""Weights the image model never uses are frozen by the component that holds them.

The frozen set of the tiny detector is pinned to the one the detector itself used to freeze
(``SAM3._freeze_dead_parameters``, now gone), and each component does its own part alone.
"""
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# requires_grad=False parameters of configs/_base_/models/sam3_tiny.py, recorded before the
# freezing moved from the detector into the components.
FROZEN_TINY = [
    'bbox_head.mask_head.pixel_decoder.conv_layers.2.bias',
    'bbox_head.mask_head.pixel_decoder.conv_layers.2.weight',
    'bbox_head.mask_head.pixel_decoder.norms.2.bias',
    'bbox_head.mask_head.pixel_decoder.norms.2.weight',
    'geometry_encoder.points_direct_project.bias',
    'geometry_encoder.points_direct_project.weight',
    'geometry_encoder.points_pool_project.bias',
    'geometry_encoder.points_pool_project.weight',
    'geometry_encoder.points_pos_enc_project.bias',
    'geometry_encoder.points_pos_enc_project.weight',
    'neck.convs.3.conv_1x1.bias',
    'neck.convs.3.conv_1x1.weight',
    'neck.convs.3.conv_3x3.bias',
    'neck.convs.3.conv_3x3.weight',
    'text_encoder.encoder.text_projection',
]


def _build_tiny(**overrides):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/models/sam3_tiny.py'))
    if overrides:
        cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    return MODELS.build(cfg.model)


def _frozen(module):
    return sorted(n for n, p in module.named_parameters() if not p.requires_grad)


def test_tiny_detector_frozen_set_unchanged():
    model = _build_tiny()
    assert _frozen(model) == FROZEN_TINY
    assert not hasattr(model, '_freeze_dead_parameters')
    # Training mode does not thaw them.
    model.train()
    assert _frozen(model) == FROZEN_TINY


def test_each_component_freezes_its_own():
    from mmsam3.models.dense_heads import SAM3MaskHead
    from mmsam3.models.language_models import SAM3TextEncoder
    from mmsam3.models.layers import SAM3GeometryEncoder

    assert _frozen(SAM3TextEncoder(embed_dims=16, width=32, heads=4,
                                   layers=1)) == ['encoder.text_projection']
    assert _frozen(SAM3GeometryEncoder(embed_dims=16, num_layers=1, num_heads=2,
                                       dim_feedforward=32)) == [
        f'points_{name}.{kind}' for name in ('direct_project', 'pool_project', 'pos_enc_project')
        for kind in ('bias', 'weight')]
    head = SAM3MaskHead(embed_dims=16, num_heads=2)  # SAM 3: three levels, stage 2 idle
    assert _frozen(head) == [f'pixel_decoder.{m}.2.{kind}' for m in ('conv_layers', 'norms')
                             for kind in ('bias', 'weight')]
    assert _frozen(SAM3MaskHead(embed_dims=16, num_heads=2, num_feature_levels=4)) == []
    with pytest.raises(ValueError, match='num_feature_levels'):
        SAM3MaskHead(embed_dims=16, num_heads=2, num_feature_levels=5)


def test_mask_head_levels_follow_the_neck():
    # A neck returning all four levels feeds three finer levels to the pixel decoder: every
    # stage runs, none is frozen.
    model = _build_tiny(**{'neck.num_dropped_levels': 0})
    assert model.bbox_head.mask_head.pixel_decoder.num_feature_levels == 4
    assert not any('pixel_decoder' in n for n in _frozen(model))

    # Fed a different number of levels than it was built for, the head says so.
    head = _build_tiny().bbox_head.mask_head
    d, h, w = 64, 3, 3
    with pytest.raises(ValueError, match='num_feature_levels'):
        head([torch.zeros(1, d, 4 * h, 4 * w)], torch.zeros(h * w, 1, d), (h, w),
             torch.zeros(1, 5, d), torch.zeros(2, 1, d))
