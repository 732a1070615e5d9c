"""Full-size SAM 3 (1008², random weights) through the deploy tool's export: ONNX Runtime parity,
external-data save / reload, and the TensorRT op audit on all three graphs. Slow (minutes, ~12 GB
of RAM)."""
import gc
import os.path as osp

import onnx
import pytest
import torch
from mmdet.structures import DetDataSample

from deploy_test_utils import REPO
from mmsam3.deploy import GRAPH_NAMES, DeployedSAM3, audit_onnx, export_sam3_graphs

SIZE = 1008


@pytest.mark.slow
def test_full_size_export_parity_external_data_and_audit(bpe_path, tmp_path):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/models/sam3_vit-l.py'))
    cfg.model.tokenizer.bpe_path = bpe_path
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    work_dir = str(tmp_path / 'graphs')
    deploy_cfg = osp.join(REPO, 'configs/deploy/instance-seg_tensorrt_static-1008x1008.py')
    manifest = export_sam3_graphs(deploy_cfg, model, work_dir)
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
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    hw = (SIZE, SIZE)
    sample = DetDataSample(metainfo=dict(
        texts=['red apple', 'dog'], img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0),
        prompt_boxes=[[[100., 200., 400., 600.]], None], prompt_box_labels=[[1], None]))
    with torch.no_grad():
        ref = model._forward(x, [sample])
        a = model.predict(x, [sample.clone()])[0].pred_instances
    # The PyTorch model goes before the ONNX Runtime sessions come (this machine has 24 GB).
    del model
    gc.collect()
    deployed = DeployedSAM3(cfg, work_dir)
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
    print('full size, PyTorch vs ONNX Runtime:', diffs)  # figures for the README (-s)
    for key in ('logits', 'boxes', 'presence'):
        assert diffs[key] <= 1e-3, diffs
    assert torch.allclose(a.scores, b.scores, atol=1e-3)
    assert torch.allclose(a.bboxes / SIZE, b.bboxes / SIZE, atol=1e-3)
    assert (a.masks != b.masks).float().mean() <= 1e-3
