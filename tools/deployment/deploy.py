"""Export SAM 3 to three ONNX graphs (and TensorRT engines when TensorRT is importable), then
run the deployed model on an image beside the PyTorch model.

    python tools/deployment/deploy.py configs/deploy/instance-seg_onnxruntime_static-1008x1008.py \
        configs/sam3/sam3_vit-l_zeroshot_coco.py checkpoints/sam3_vit-l_mmsam3.pth demo.jpg \
        --work-dir work_dirs/sam3_onnx --texts "fish" "shark"

Writes ``vision_tower.onnx``, ``text_tower.onnx``, ``prompt_decoder.onnx`` (large ones with a
``.onnx.data`` external-data file), ``sam3_graphs.json`` (inputs / outputs / shapes, weights
fingerprints, deploy settings) and, for a TensorRT deploy config with TensorRT installed,
``<graph>.engine``. Mirrors mmdeploy's ``tools/deploy.py`` arguments; mmdeploy's own tool cannot
do this (its ``torch2onnx`` makes one graph with image inputs only).
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np
import torch

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import mmsam3  # noqa: E402,F401  (registers modules)
from mmengine.config import Config, DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export SAM 3 for deployment (three graphs)')
    parser.add_argument('deploy_cfg', help='deploy config (configs/deploy/)')
    parser.add_argument('model_cfg', help='model config')
    parser.add_argument('checkpoint', help='model checkpoint')
    parser.add_argument('img', help='image to run the deployed model on')
    parser.add_argument('--work-dir', required=True, help='where the graphs go')
    parser.add_argument('--texts', nargs='*', default=['object'], help='phrases to run on IMG')
    parser.add_argument('--device', default='cpu', help='export / PyTorch device')
    parser.add_argument('--show-top', type=int, default=5, help='detections printed per model')
    parser.add_argument('--skip-export', action='store_true',
                        help='reuse the graphs already in --work-dir (only run and compare)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='model config overrides key=value')
    return parser.parse_args(argv)


def _print_detections(title, pred, top):
    inst = pred.pred_instances
    print(f'{title}: {len(inst)} detections')
    for i in range(min(top, len(inst))):
        box = ', '.join(f'{v:.1f}' for v in inst.bboxes[i].tolist())
        print(f'  {inst.label_names[i]:<20} score {float(inst.scores[i]):.4f}  box [{box}]')


def compare(pred_torch, pred_deployed) -> dict:
    """Largest differences of two predictions of the same image (same query order)."""
    a, b = pred_torch.pred_instances, pred_deployed.pred_instances
    n = min(len(a), len(b))
    diff = dict(num=(len(a), len(b)))
    diff['scores'] = float((a.scores[:n] - b.scores[:n]).abs().max()) if n else 0.0
    diff['boxes'] = float((a.bboxes[:n] - b.bboxes[:n]).abs().max()) if n else 0.0
    if 'masks' in a and 'masks' in b and n:
        diff['mask_pixels'] = float((a.masks[:n] != b.masks[:n]).float().mean())
    return diff


def main(argv=None):
    args = parse_args(argv)
    from demo import run
    from mmdet.apis import init_detector

    from mmsam3.deploy import (DeployedSAM3, export_sam3_graphs, load_deploy_cfg,
                               sam3_deploy_settings)
    from mmsam3.deploy.tensorrt_engine_builder import build_engines, tensorrt_available

    deploy_cfg = load_deploy_cfg(args.deploy_cfg)
    backend = deploy_cfg.backend_config.type
    model_cfg = Config.fromfile(args.model_cfg)
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    settings = sam3_deploy_settings(deploy_cfg)
    model = init_detector(model_cfg, args.checkpoint, device=args.device)
    if not args.skip_export:
        start = time.perf_counter()
        export_sam3_graphs(deploy_cfg, model, args.work_dir,
                           model_info=dict(config=args.model_cfg, checkpoint=args.checkpoint))
        print(f'exported 3 graphs for {settings["input_hw"][0]}x{settings["input_hw"][1]} in '
              f'{time.perf_counter() - start:.1f} s to {args.work_dir}')
    run_backend = 'onnxruntime'
    if backend == 'tensorrt':
        ok, reason = tensorrt_available()
        if ok:
            build_engines(deploy_cfg, args.work_dir)
            run_backend = 'tensorrt'
        else:
            print(f'TensorRT engines not built here ({reason}); build them on the device with '
                  'tools/deployment/build_trt_engines.sh. Running the ONNX graphs instead.')
    device = args.device if run_backend == 'tensorrt' else 'cpu'
    deployed = DeployedSAM3(model_cfg, args.work_dir, backend=run_backend, device=device)
    pred_torch = run(model, model_cfg, args.img, args.texts, None, None)
    pred_dep = run(deployed, model_cfg, args.img, args.texts, None, None)
    _print_detections('PyTorch', pred_torch, args.show_top)
    _print_detections(f'deployed ({run_backend})', pred_dep, args.show_top)
    diff = compare(pred_torch, pred_dep)
    print('max |PyTorch - deployed|: ' + ', '.join(
        f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in diff.items()))
    return diff


if __name__ == '__main__':
    np.set_printoptions(precision=4)
    torch.set_grad_enabled(False)
    main()
