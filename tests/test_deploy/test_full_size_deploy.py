"""Full-size SAM 3 (1008², random weights) through mmdeploy's pipeline as its tools/deploy.py
runs it (``torch2onnx`` in a spawned process, ``to_backend``): ONNX Runtime parity, external-data
save / reload, and the TensorRT op audit on all three graphs. Slow (~15 min, ~12 GB of RAM, a
3.4 GB checkpoint in the test's tmp dir)."""
import gc
import os.path as osp

import mmcv
import numpy as np
import onnx
import pytest
import torch
from mmdet.structures import DetDataSample

from deploy_test_utils import REPO
from mmsam3.deploy import GRAPH_NAMES, MANIFEST_NAME, audit_onnx, read_manifest

SIZE = 1008
MODEL_CFG = osp.join(REPO, 'configs/sam3/sam3_vit-l_zeroshot_coco.py')
DEPLOY_CFG = osp.join(REPO, 'configs/deploy/instance-seg_tensorrt_static-1008x1008.py')
ORT_DEPLOY_CFG = osp.join(REPO, 'configs/deploy/instance-seg_onnxruntime_static-1008x1008.py')


def _build(cfg, checkpoint=None):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu')
    return model


@pytest.mark.slow
def test_full_size_through_mmdeploy_pipeline(spawned_pipeline, bpe_path, tmp_path):
    import mmsam3  # noqa: F401
    from mmdeploy.apis import build_task_processor, torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import load_config
    cfg = load_config(MODEL_CFG)[0]
    cfg.model.tokenizer.bpe_path = bpe_path
    ckpt = str(tmp_path / 'sam3_random.pth')
    torch.save({'state_dict': _build(cfg).state_dict(), 'meta': {}}, ckpt)
    gc.collect()
    img = str(tmp_path / 'image.png')
    mmcv.imwrite(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8), img)
    work_dir = str(tmp_path / 'graphs')
    # mmdeploy refuses a TensorRT config without a CUDA device: on this CPU host the export
    # runs with the ONNX Runtime config of the same size and limits, whose manifest carries the
    # TensorRT config's profiles (checked below) for the build on the device.
    torch2onnx(img, work_dir, MANIFEST_NAME, ORT_DEPLOY_CFG, cfg, ckpt, device='cpu')
    files = to_backend('onnxruntime', [osp.join(work_dir, MANIFEST_NAME)], work_dir=work_dir,
                       deploy_cfg=load_config(ORT_DEPLOY_CFG)[0], device='cpu')
    manifest = read_manifest(work_dir)
    # The two towers are far above 512 MiB: weights in one .onnx.data file, and they reload.
    # What stays in the .onnx file is the graph and its Constant nodes (the ViT's RoPE cos / sin
    # tables, about 39 MB at 1008), far below protobuf's 2 GB limit.
    for name in ('vision_tower', 'text_tower'):
        assert manifest['graphs'][name]['external_data']
        path = osp.join(work_dir, f'{name}.onnx')
        assert osp.getsize(path) < 128 * 2**20 and osp.getsize(path + '.data') > 2**30
        onnx.checker.check_model(path)
        reloaded = onnx.load(path)  # reads the external data back
        assert sum(len(t.raw_data) for t in reloaded.graph.initializer) > 2**30
        del reloaded
    for name in GRAPH_NAMES:
        report = audit_onnx(osp.join(work_dir, f'{name}.onnx'))
        assert report.ok, report.violations
    # The profiles the device build will use are the TensorRT config's.
    from mmsam3.deploy.tensorrt_engine_builder import trt_profiles
    assert {g: e['trt_profile'] for g, e in manifest['graphs'].items()} == \
        trt_profiles(load_config(DEPLOY_CFG)[0])
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    hw = (SIZE, SIZE)
    sample = DetDataSample(metainfo=dict(
        texts=['red apple', 'dog'], img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0),
        prompt_boxes=[[[100., 200., 400., 600.]], None], prompt_box_labels=[[1], None]))
    model = _build(cfg, ckpt)
    with torch.no_grad():
        ref = model._forward(x, [sample])
        a = model.predict(x, [sample.clone()])[0].pred_instances
    # The PyTorch model goes before the ONNX Runtime sessions come.
    del model
    gc.collect()
    task = build_task_processor(cfg, load_config(ORT_DEPLOY_CFG)[0], 'cpu')
    deployed = task.build_backend_model(files)
    with torch.no_grad():
        got = deployed._forward(x, [sample])
        b = deployed.predict(x, [sample.clone()])[0].pred_instances
    diffs = {key: float((ref[key][-1:] - got[key]).abs().max())
             for key in ('logits', 'boxes', 'presence')}
    assert len(a) == len(b), (len(a), len(b))
    if len(a):
        diffs.update(detections=len(a), scores=float((a.scores - b.scores).abs().max()),
                     boxes_px=float((a.bboxes - b.bboxes).abs().max()),
                     mask_pixels=float((a.masks != b.masks).float().mean()))
    print('full size, PyTorch vs ONNX Runtime (mmdeploy pipeline):', diffs)
    for key in ('logits', 'boxes', 'presence'):
        assert diffs[key] <= 1e-3, diffs
    assert torch.allclose(a.scores, b.scores, atol=1e-3)
    assert torch.allclose(a.bboxes / SIZE, b.bboxes / SIZE, atol=1e-3)
    assert (a.masks != b.masks).float().mean() <= 1e-3
