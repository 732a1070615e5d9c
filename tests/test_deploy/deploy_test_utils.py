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


def build_tiny_model(bpe_path, seed=0):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(MODEL_CFG)
    cfg.model.tokenizer.bpe_path = bpe_path
    torch.manual_seed(seed)
    return MODELS.build(cfg.model).eval(), cfg
