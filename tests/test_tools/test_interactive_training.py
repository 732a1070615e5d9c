"""SAM3Interactive trained with SAM's prompt simulation and evaluated in clicks, through a real
mmengine Runner and tools/test.py on a few synthetic shapes images."""
import copy
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tests.utils import run_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3_interactive',
                  'sam3_tiny-interactive_scratch_1xb4-5k_shapes.py')


def _cfg(root, work_dir, max_iters=4):
    cfg = Config.fromfile(CONFIG)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = root
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = 1000
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.model.num_correction_rounds = 1
    cfg.model.num_no_click_rounds = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=max_iters,
                                        by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.work_dir = work_dir
    return cfg


def test_training_steps_change_trainable_weights_only_and_test_prints_click_metrics(
        shapes, tmp_path):
    torch.set_num_threads(1)
    runner = Runner.from_cfg(_cfg(shapes, str(tmp_path)))
    model = runner.model
    before, losses = {}, []


    orig = model.train_step

    def train_step(data, optim_wrapper):
        if not before:  # after the runner's init_weights
            before.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        out = orig(data, optim_wrapper)
        losses.append(float(out['loss'].detach()))
        return out

    model.train_step = train_step
    runner.train()
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    after = model.state_dict()
    changed = {k.split('.')[0] for k in before
               if before[k].is_floating_point() and not torch.equal(before[k], after[k])}
    # from scratch: the ViT, the tracker neck and the interactive head train; the concept parts
    # (frozen, idle) do not move
    assert {'backbone', 'tracker_neck', 'interactive_head'} <= changed
    assert not changed & {'neck', 'encoder', 'decoder', 'bbox_head', 'text_encoder'}

    rc, out = run_tool([sys.executable, osp.join(REPO, 'tools/test.py'), CONFIG,
                    str(tmp_path / 'iter_4.pth'), '--work-dir', str(tmp_path / 'test'),
                    '--cfg-options', f'test_dataloader.dataset.data_root={shapes}',
                    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'],
                   cwd=REPO)
    assert rc == 0, out[-3000:]
    for key in ('click/mIoU@1', 'click/mIoU@5', 'click/NoC@85', 'click/NoC@90',
                'click/NoF@85', 'click/NoF@90'):
        assert key in out, key


def test_heads_only_default_and_bad_input(shapes):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import mmsam3  # noqa: F401
    init_default_scope('mmdet')  # the data preprocessor's registry, also when run alone
    cfg = Config.fromfile(CONFIG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('frozen_modules')  # the class default: only tracker neck + head train
    model = MODELS.build(model_cfg)
    trainable = {n.split('.')[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'tracker_neck', 'interactive_head'}
    with pytest.raises(ValueError, match='168 x 168'):
        model.loss(torch.zeros(1, 3, 140, 140), [])
    bad = copy.deepcopy(cfg.model)
    bad.pop('interactive_head')
    with pytest.raises(ValueError, match='tracker_neck and interactive_head'):
        MODELS.build(bad)
    with pytest.raises(ValueError, match='num_clicks'):
        MODELS.build(dict(model_cfg, num_clicks=0))


def _one_sample(num_objects=2):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    masks = torch.zeros(num_objects, 168, 168, dtype=torch.uint8)
    for i in range(num_objects):
        masks[i, 20 + 60 * i:60 + 60 * i, 30:90] = 1
    sample = DetDataSample(metainfo=dict(img_shape=(168, 168), pad_shape=(168, 168)))
    sample.gt_instances = InstanceData(masks=BitmapMasks(masks.numpy(), 168, 168),
                                       labels=torch.zeros(num_objects, dtype=torch.long))
    return sample


@pytest.mark.parametrize('single', [False, True])
def test_point_prompts_can_also_train_the_single_mask_output(single):
    """With one-point first prompts only, output 0's hypernetwork gets mask gradients only
    when ``point_trains_single_mask`` is on (the IoU head is trained on every output)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import mmsam3  # noqa: F401
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIG)
    model = MODELS.build(dict(cfg.model, num_correction_rounds=0, num_no_click_rounds=0,
                              point_trains_single_mask=single, mask_prompt_choice='best',
                              prompt_sampler=dict(type='InteractivePromptSampler',
                                                  prob_box=0.0)))
    losses = model.loss(torch.randn(1, 3, 168, 168), [_one_sample()])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    mlps = model.interactive_head.mask_decoder.output_hypernetworks_mlps
    grad0 = mlps[0].layers[-1].weight.grad
    assert (grad0 is not None and grad0.abs().sum() > 0) == single
    with pytest.raises(ValueError, match="'iou' or 'best'"):
        MODELS.build(dict(cfg.model, mask_prompt_choice='oracle'))


@pytest.mark.slow
def test_interactive_learning_check_from_scratch(tmp_path):
    """The learning check itself (about 20 CPU minutes): mIoU@1 >= 0.75, NoC@85 <= 3."""
    rc, out = run_tool([sys.executable,
                    osp.join(REPO, 'tools/analysis_tools/interactive_learning_check.py'),
                    '--threads', '1', '--work-dir', str(tmp_path / 'check'),
                    '--data-root', str(tmp_path / 'shapes')], cwd=REPO, timeout=3600)
    assert 'untrained' in out and 'trained' in out
    assert rc == 0, out[-3000:]
