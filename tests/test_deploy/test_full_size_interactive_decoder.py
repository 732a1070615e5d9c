"""Full-size interactive decoder (SAM 3's sizes: 256 channels, 72 x 72 grid, 288 x 288 low-res
masks; random weights) exported inside mmdeploy's rewriter context and run on ONNX Runtime
against PyTorch: every output within 1e-3, the single-mask choice and the final masks alike.

The decoder graph reads only the vision graph's tracker outputs, so this test builds the
interactive head alone (the full-size vision tower's export and parity are
test_full_size_deploy.py's, ~15 min and ~12 GB); the tracker features are random tensors of the
vision graph's output shapes. Slow only by convention (full size): about a minute on 2 cores.
"""
import os.path as osp
import time

import numpy as np
import pytest
import torch
from torch import nn

from deploy_test_utils import REPO

TOL = 1e-3
HEAD_CFG = osp.join(REPO, 'configs/_base_/models/sam3_vit-l_interactive.py')
DEPLOY_CFG = osp.join(REPO, 'configs/deploy/instance-seg-interactive_tensorrt_static-1008x1008.py')


class _HeadOnly(nn.Module):
    """What :class:`InteractiveDecoderGraph` reads of a SAM 3 model: its interactive head."""

    def __init__(self, head):
        super().__init__()
        self.interactive_head = head


@pytest.mark.slow
def test_full_size_interactive_decoder_on_onnxruntime(tmp_path):
    import onnxruntime as ort
    from mmdeploy.core import RewriterContext
    from mmdeploy.utils import IR
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmsam3.deploy import audit_onnx, load_deploy_cfg
    from mmsam3.deploy.export_graphs import (INTERACTIVE_INPUTS, INTERACTIVE_OUTPUTS,
                                             InteractiveDecoderGraph)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    head = MODELS.build(Config.fromfile(HEAD_CFG).model.interactive_head).eval()
    assert head.low_res_size == (288, 288) and head.embed_dims == 256
    gen = torch.Generator().manual_seed(0)
    levels = (torch.randn(1, 256, 288, 288, generator=gen),
              torch.randn(1, 256, 144, 144, generator=gen),
              torch.randn(1, 256, 72, 72, generator=gen))
    with torch.no_grad():
        feats = head.image_feats(levels)
    tracker = (feats['image_embed'], feats['feat_s0'], feats['feat_s1'])
    graph = InteractiveDecoderGraph(_HeadOnly(head)).eval()
    example = (*tracker, torch.rand(1, 3, 2, generator=gen) * 1008,
               torch.tensor([[1, 0, -1]]), torch.randn(1, 1, 288, 288, generator=gen),
               torch.ones(1))
    path = str(tmp_path / 'interactive_decoder.onnx')
    deploy_cfg = load_deploy_cfg(DEPLOY_CFG)
    start = time.perf_counter()
    with torch.no_grad(), RewriterContext(cfg=deploy_cfg, backend='onnxruntime', ir=IR.ONNX,
                                                 opset=17):
        torch.onnx.export(graph, example, path, input_names=list(INTERACTIVE_INPUTS),
                          output_names=list(INTERACTIVE_OUTPUTS), opset_version=17,
                          dynamic_axes=dict(point_coords={1: 'num_points'},
                                            point_labels={1: 'num_points'}))
    export_s = time.perf_counter() - start
    report = audit_onnx(path)
    assert report.ok, report.violations
    options = ort.SessionOptions()
    threads = torch.get_num_threads()  # the same thread count for both timings
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    cases = {
        'one click': ([[500.0, 380.0]], [1], None),
        'positive + negative': ([[500.0, 380.0], [200.0, 640.0]], [1, 0], None),
        'box': ([[100.0, 150.0], [800.0, 900.0]], [2, 3], None),
        'box + click': ([[100.0, 150.0], [800.0, 900.0], [450.0, 500.0]], [2, 3, 0], None),
        'clicks + mask prompt': ([[500.0, 380.0], [700.0, 100.0]], [1, 1], 'mask'),
        'mask prompt alone': ([], [], 'mask'),
    }
    worst = dict(low_res_logits=0.0, iou_pred=0.0, object_score_logits=0.0, mask_pixels=0.0)
    timings = {}
    for name, (points, labels, with_mask) in cases.items():
        coords = torch.tensor(points, dtype=torch.float32).reshape(1, -1, 2)
        lbl = torch.tensor(labels, dtype=torch.long).reshape(1, -1)
        mask = torch.randn(1, 1, 288, 288, generator=gen) * 8
        args = (feats, coords if points else None, lbl.int() if points else None,
                mask if with_mask else None)
        with torch.no_grad():
            head(*args)  # warm-up
            start = time.perf_counter()
            ref = head(*args)
        torch_s = time.perf_counter() - start
        pad = 1 if points else 0
        feed = dict(zip(INTERACTIVE_INPUTS, [t.numpy() for t in tracker]))
        feed.update(point_coords=torch.cat([coords, torch.zeros(1, pad, 2)], 1).numpy(),
                    point_labels=torch.cat([lbl, -torch.ones(1, pad, dtype=torch.long)],
                                           1).numpy(),
                    mask_input=(mask if with_mask else torch.zeros_like(mask)).numpy(),
                    has_mask_input=np.array([1.0 if with_mask else 0.0], np.float32))
        session.run(None, feed)  # warm-up
        start = time.perf_counter()
        got = dict(zip(INTERACTIVE_OUTPUTS, session.run(None, feed)))
        timings[name] = (torch_s, time.perf_counter() - start)
        for key, ref_key in (('low_res_logits', 'all_low_res_logits'),
                             ('iou_pred', 'all_iou_pred'),
                             ('object_score_logits', 'object_score_logits')):
            diff = float(np.abs(ref[ref_key].numpy() - got[key]).max())
            worst[key] = max(worst[key], diff)
        for multimask in (True, False):
            a, _ = head.mask_decoder.select(ref['all_low_res_logits'], ref['all_iou_pred'],
                                            multimask)
            b, _ = head.mask_decoder.select(torch.from_numpy(got['low_res_logits']),
                                            torch.from_numpy(got['iou_pred']), multimask)
            pixels = (head.postprocess_masks(a, (768, 1024)) !=
                      head.postprocess_masks(b, (768, 1024))).float().mean()
            worst['mask_pixels'] = max(worst['mask_pixels'], float(pixels))
    print(f'\nfull-size interactive decoder ({threads} threads): export {export_s:.1f} s; '
          'worst |PyTorch - ORT| '
          + ', '.join(f'{k} {v:.3g}' for k, v in worst.items()))
    for name, (torch_s, ort_s) in timings.items():
        print(f'  {name:<22} PyTorch {torch_s * 1e3:7.1f} ms   ONNX Runtime {ort_s * 1e3:7.1f} ms')
    for key in ('low_res_logits', 'iou_pred', 'object_score_logits'):
        assert worst[key] <= TOL, worst
    assert worst['mask_pixels'] <= 1e-3, worst
