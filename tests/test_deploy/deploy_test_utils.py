"""Helpers shared by the deployment tests (the tiny model, the tools as modules)."""
import importlib.util
import os.path as osp

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_CFG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')
DEPLOY_CFG = osp.join(REPO, 'configs', 'deploy',
                      'instance-seg_onnxruntime_static-168x168.py')
SIZE = 168


def load_tool(name):
    """A script of tools/deployment as a module (they are not a package)."""
    path = osp.join(REPO, 'tools', 'deployment', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'deployment_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INTERACTIVE_MODEL = osp.join(REPO, 'configs', '_base_/models/sam3_tiny_interactive.py')


def interactive_model_cfg(bpe_path):
    """The tiny shapes config (MODEL_CFG) with the tiny interactive head and tracker neck."""
    from mmengine.config import Config
    cfg = Config.fromfile(MODEL_CFG)
    interactive = Config.fromfile(INTERACTIVE_MODEL).model
    cfg.model.tracker_neck = interactive.tracker_neck
    cfg.model.interactive_head = interactive.interactive_head
    cfg.model.tokenizer.bpe_path = bpe_path
    return cfg


def build_tiny_model(bpe_path, seed=0, cfg=None):
    """The tiny model (random weights, ``seed``) of ``cfg`` (default: MODEL_CFG)."""
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    if cfg is None:
        cfg = Config.fromfile(MODEL_CFG)
        cfg.model.tokenizer.bpe_path = bpe_path
    torch.manual_seed(seed)
    return MODELS.build(cfg.model).eval(), cfg
