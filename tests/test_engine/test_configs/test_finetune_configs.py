"""The fine-tuning configs load, and build model + optim wrapper + schedulers at tiny sizes."""
import os.path as osp

import pytest
import torch
# The sizes of configs/_base_/models/sam3_tiny.py, applied over an experiment's model, live in the
# memory tool (tools/analysis_tools is on sys.path through tests/conftest.py).
from train_memory import apply_tiny_sizes

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIGS = ['sam3/sam3_vit-l_full-ft_1xb1-1k_rf100-vl.py', 'sam3/sam3_vit-l_frozen-towers_1xb1-1k_coco.py',
           'sam3/sam3_vit-l_lora_1xb1-1k_coco.py']


def load(name, bpe_path=None):
    import mmsam3  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    if bpe_path is not None:
        cfg.model.tokenizer.bpe_path = bpe_path
    return cfg


def tiny_model(cfg):
    from mmdet.registry import MODELS
    apply_tiny_sizes(cfg.model)
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds(name, bpe_path):
    from mmdet.registry import HOOKS, PARAM_SCHEDULERS
    from mmengine.optim import build_optim_wrapper
    cfg = load(name, bpe_path)
    # Shared recipe.
    assert cfg.load_from == 'checkpoints/sam3_vit-l_mmsam3.pth'
    assert cfg.model_wrapper_cfg.find_unused_parameters is True
    ow = cfg.optim_wrapper
    assert ow.constructor == 'SAM3OptimWrapperConstructor'
    assert (ow.type, ow.dtype) == ('AmpOptimWrapper', 'bfloat16')
    assert ow.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.lr == 8e-5
    assert ow.optimizer.weight_decay == 0.1
    assert cfg.param_scheduler[0].type == 'InverseSquareRootLR'
    assert cfg.param_scheduler[0].end == cfg.train_cfg.max_iters
    assert any(h.type == 'TrainingHealthHook' for h in cfg.custom_hooks)
    for h in cfg.custom_hooks:
        HOOKS.build(h)
    for key in ('geometry_encoder', 'encoder', 'decoder'):
        assert cfg.model[key].with_cp is True

    model = tiny_model(cfg)
    # CPU here: fp32 wrapper, same constructor and paramwise_cfg.
    ow = dict(ow, type='OptimWrapper')
    ow.pop('dtype'), ow.pop('loss_scale')
    wrapper = build_optim_wrapper(model, ow)
    assert wrapper.clip_grad_kwargs == dict(max_norm=0.1, norm_type=2)
    in_opt = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert in_opt == trainable
    sched = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler[0], optimizer=wrapper))
    assert all(g['lr'] == 0 for g in wrapper.optimizer.param_groups)  # warm-up from 0
    del sched

    if 'full-ft' in name:
        assert cfg.model.backbone.with_cp and cfg.model.text_encoder.with_cp
        assert model.bbox_head.mask_head is None and cfg.train_dataloader.dataset.num_images == 100
        assert cfg.randomness.seed == 123 and cfg.train_cfg.max_iters == 1000
        assert all(p.requires_grad for n, p in model.backbone.named_parameters())
    elif 'frozen' in name:
        assert not any(p.requires_grad for p in model.backbone.parameters())
        assert not any(p.requires_grad for p in model.text_encoder.parameters())
    else:
        tower = [n for n, p in model.named_parameters()
                 if p.requires_grad and n.startswith(('backbone.', 'text_encoder.'))]
        assert tower and all('lora_' in n for n in tower)
        lrs = {g['initial_lr'] for g in wrapper.optimizer.param_groups}
        assert max(lrs) == pytest.approx(2e-4)  # text adapters (no layer decay)
        assert any(lr == pytest.approx(2e-4 * 0.9) for lr in lrs)  # last ViT block adapters
