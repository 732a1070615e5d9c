"""TensorRT 10: graphs exported with the TensorRT deploy config (checked here with ONNX Runtime
and the static op audit), and engines built and run where TensorRT and a CUDA device exist.

TensorRT cannot be had on this project's machines (it needs a CUDA device to parse or build;
the lent GPU machine reaches no package registry), so the engine tests skip with that reason.
"""
import os
import os.path as osp

import pytest
import torch

from deploy_test_utils import REPO, SIZE, load_tool
from mmsam3.deploy import GRAPH_NAMES, DeployedSAM3, audit_onnx
from mmsam3.deploy.tensorrt_engine_builder import build_engines, tensorrt_available, trt_profiles

TRT_CFG = osp.join(REPO, 'configs', 'deploy', 'instance-seg_tensorrt_static-168x168.py')
TRT_OK, TRT_REASON = tensorrt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f'TensorRT engines need TensorRT and a CUDA '
                               f'device: {TRT_REASON}')


@pytest.fixture(scope='module')
def trt_graphs(tiny_deployment, shapes_root, tmp_path_factory):
    """The TensorRT config's graphs, exported on this CPU host by the deploy tool (--ir-only:
    mmdeploy itself refuses a TensorRT config without a CUDA device)."""
    work_dir = str(tmp_path_factory.mktemp('trt_graphs'))
    assert load_tool('deploy').main([
        TRT_CFG, tiny_deployment.model_cfg, tiny_deployment.ckpt,
        shapes_root + 'valid/000000.png', '--work-dir', work_dir, '--device', 'cpu',
        '--ir-only', '--cfg-options', *tiny_deployment.cfg_options]) is None
    return work_dir


def _sample(texts):
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(texts=texts, img_shape=(SIZE, SIZE),
                                       ori_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0)))


def test_tensorrt_deploy_config_graphs_pass_the_audit_and_match(tiny_deployment, trt_graphs):
    from mmsam3.deploy import load_deploy_cfg, read_manifest
    manifest = read_manifest(trt_graphs)
    profiles = trt_profiles(load_deploy_cfg(TRT_CFG))
    for name in GRAPH_NAMES:
        report = audit_onnx(osp.join(trt_graphs, f'{name}.onnx'))
        assert report.ok, report.violations
        entry = manifest['graphs'][name]
        assert entry['trt_profile'] == profiles[name]
        assert set(entry['trt_profile']) == {i['name'] for i in entry['inputs']}
    # FP16 builds pin these to FP32: every LayerNorm and Softmax of the ViT is listed.
    fp32 = manifest['graphs']['vision_tower']['fp32_layers']
    assert any('LayerNormalization' in n for n in fp32) and any('Softmax' in n for n in fp32)
    # The graphs a Jetson gets compute what PyTorch does (checked on ONNX Runtime).
    deployed = DeployedSAM3(tiny_deployment.cfg, trt_graphs, backend='onnxruntime')
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    s = _sample(['red circle', 'blue square'])
    with torch.no_grad():
        ref = tiny_deployment.model._forward(x, [s])
        got = deployed._forward(x, [s])
    for key in ('logits', 'boxes', 'presence'):
        assert float((ref[key][-1:] - got[key]).abs().max()) <= 1e-4
    assert float((ref['pred_masks'] - got['pred_masks']).abs().max()) <= 1e-4


def test_engine_files_are_refused_without_tensorrt(trt_graphs, tiny_deployment, tmp_path):
    if TRT_OK:
        pytest.skip('TensorRT is available here; the engine tests below run instead')
    files = []
    for name in GRAPH_NAMES:
        (tmp_path / f'{name}.engine').write_bytes(b'not an engine')
        files.append(str(tmp_path / f'{name}.engine'))
    with pytest.raises((ImportError, RuntimeError)):
        DeployedSAM3(tiny_deployment.cfg, files + [osp.join(trt_graphs, 'sam3_graphs.json')],
                     backend='tensorrt', device='cuda:0')


@needs_trt
def test_engines_match_onnx_runtime(trt_graphs, tiny_deployment):
    from mmsam3.deploy import load_deploy_cfg
    build_engines(load_deploy_cfg(TRT_CFG), trt_graphs)
    trt_model = DeployedSAM3(tiny_deployment.cfg, trt_graphs, backend='tensorrt',
                             device='cuda:0')
    ort_model = DeployedSAM3(tiny_deployment.cfg, trt_graphs, backend='onnxruntime')
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    s = _sample(['red circle', 'blue square'])
    with torch.no_grad():
        a = ort_model._forward(x, [s])
        b = trt_model._forward(x.cuda(), [s])
    for key in a:
        assert float((a[key] - b[key].cpu().float()).abs().max()) <= 1e-3, key


@needs_trt
def test_engine_profile_limits_are_enforced(trt_graphs, tiny_deployment):
    trt_model = DeployedSAM3(tiny_deployment.cfg, trt_graphs, backend='tensorrt',
                             device='cuda:0')
    ids = torch.ones(5, 32, dtype=torch.long)
    with pytest.raises(ValueError, match='at most 4'):
        trt_model.graphs['text_tower'](token_ids=ids)



def test_build_script_gives_trtexec_the_profiles_and_fp32_layers(trt_graphs, tmp_path):
    """tools/deployment/build_trt_engines.sh with a recording stand-in for trtexec (the real
    one needs TensorRT and a GPU): the arguments it would build the engines with."""
    import subprocess
    calls = tmp_path / 'calls.txt'
    fake = tmp_path / 'trtexec'
    fake.write_text('#!/usr/bin/env bash\n'
                    f'echo "$@" >> "{calls}"\n'
                    'for a in "$@"; do case "$a" in --saveEngine=*) : > "${a#--saveEngine=}";; '
                    'esac; done\n'
                    'echo "[I] GPU Compute Time: min = 1.0 ms"\n')
    fake.chmod(0o755)
    script = osp.join(REPO, 'tools', 'deployment', 'build_trt_engines.sh')
    proc = subprocess.run(['bash', script, trt_graphs, '--fp16'], capture_output=True, text=True,
                          env=dict(os.environ, TRTEXEC=str(fake)), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 3
    vision, text, decoder = lines
    assert f'--minShapes=image:1x3x{SIZE}x{SIZE}' in vision and '--fp16' in vision
    assert '--precisionConstraints=obey' in vision
    layers = [a for a in vision.split() if a.startswith('--layerPrecisions=')][0]
    assert 'LayerNormalization:fp32' in layers and 'Softmax:fp32' in layers
    assert '--maxShapes=token_ids:4x32' in text
    assert 'boxes:4x4x4' in decoder and 'feat_s16:1x64x12x12' in decoder
    for name in GRAPH_NAMES:
        assert osp.isfile(osp.join(trt_graphs, f'{name}.engine'))
        os.remove(osp.join(trt_graphs, f'{name}.engine'))  # not real engines
