"""One tiny SAM 3 (random weights, seed 0), exported once through tools/deployment/deploy.py
(mmdeploy's pipeline in one process), shared by the deployment tests; a small shapes dataset to
evaluate on; mmdeploy's pipeline in its tools' subprocess mode."""
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from deploy_test_utils import (DEPLOY_CFG, MODEL_CFG, REPO, SIZE, build_tiny_model,
                               interactive_model_cfg, load_tool)


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('deploy_shapes'))
    proc = subprocess.run([sys.executable,
                           osp.join(REPO, 'tools/dataset_converters/make_shapes_dataset.py'), root,
                           '--train', '1', '--val', '4', '--size', str(SIZE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root + '/'


@pytest.fixture(scope='session')
def tiny_deployment(tmp_path_factory, bpe_path, shapes_root):
    """The tiny model, its checkpoint, and its three graphs exported by the deploy tool."""
    out = tmp_path_factory.mktemp('tiny_deploy')
    model, cfg = build_tiny_model(bpe_path)
    ckpt = str(out / 'tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    work_dir = str(out / 'graphs')
    deploy = load_tool('deploy')
    options = [f'model.tokenizer.bpe_path={bpe_path}']
    with torch.no_grad():
        diff = deploy.main([DEPLOY_CFG, MODEL_CFG, ckpt, shapes_root + 'valid/000000.png',
                            '--work-dir', work_dir, '--texts', 'red circle', 'blue square',
                            '--cfg-options', *options])
    return SimpleNamespace(model=model, cfg=cfg, ckpt=ckpt, work_dir=work_dir, diff=diff,
                           deploy_cfg=DEPLOY_CFG, model_cfg=MODEL_CFG, cfg_options=options)


@pytest.fixture(scope='session')
def interactive_deployment(tmp_path_factory, bpe_path, shapes_root):
    """The tiny model with the interactive head (clicks), its config file and checkpoint, and
    its four graphs exported by the deploy tool."""
    out = tmp_path_factory.mktemp('tiny_interactive_deploy')
    cfg = interactive_model_cfg(bpe_path)
    model_cfg = str(out / 'sam3_tiny_interactive_shapes.py')
    cfg.dump(model_cfg)
    model, cfg = build_tiny_model(bpe_path, cfg=cfg)
    ckpt = str(out / 'tiny_interactive.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    work_dir = str(out / 'graphs')
    with torch.no_grad():
        diff = load_tool('deploy').main([DEPLOY_CFG, model_cfg, ckpt,
                                         shapes_root + 'valid/000000.png', '--work-dir',
                                         work_dir, '--texts', 'red circle', '--points',
                                         '84,84', '30,40,0'])
    return SimpleNamespace(model=model, cfg=cfg, ckpt=ckpt, work_dir=work_dir, diff=diff,
                           model_cfg=model_cfg)


@pytest.fixture(scope='session')
def deployed(tiny_deployment):
    from mmsam3.deploy import DeployedSAM3
    return DeployedSAM3(tiny_deployment.cfg, tiny_deployment.work_dir)


@pytest.fixture
def spawned_pipeline():
    """mmdeploy's pipeline functions in subprocess mode with spawned processes, as its
    tools/deploy.py sets them up; put back afterwards."""
    from mmdeploy.apis import (create_calib_input_data, extract_model, torch2onnx,
                               torch2torchscript)
    from mmdeploy.apis.core import PIPELINE_MANAGER
    from mmdeploy.apis.utils import to_backend
    import torch.multiprocessing as mp
    funcs = [torch2onnx, torch2torchscript, extract_model, create_calib_input_data, to_backend]
    old = mp.get_start_method(allow_none=True)
    mp.set_start_method('spawn', force=True)
    PIPELINE_MANAGER.enable_multiprocess(True, funcs)
    try:
        yield
    finally:
        PIPELINE_MANAGER.enable_multiprocess(False, funcs)
        mp.set_start_method(old, force=True)
