"""Deploy SAM 3 with mmdeploy's pipeline, in one process, and compare with PyTorch.

    python tools/deployment/deploy.py configs/deploy/instance-seg_onnxruntime_static-1008x1008.py \
        configs/sam3/sam3_vit-l_zeroshot_coco.py checkpoints/sam3_vit-l_mmsam3.pth demo.jpg \
        --work-dir work_dirs/sam3_onnx --texts "fish" "shark"

The same calls as mmdeploy's ``tools/deploy.py`` (``torch2onnx``, ``to_backend``, then the
backend and PyTorch models on the image through the ``mmsam3`` task processor), without its
spawned processes, plus: ``--texts`` for the phrases, the largest PyTorch / deployed difference
printed, and ``--ir-only`` to export a TensorRT deploy config's graphs on a CPU host (mmdeploy
refuses a TensorRT config with a CPU device; build the engines on the device with
``tools/deployment/build_trt_engines.sh``). Writes ``vision_tower.onnx``, ``text_tower.onnx``,
``prompt_decoder.onnx`` (large ones with a ``.onnx.data`` file), ``sam3_graphs.json``,
``<graph>.engine`` for TensorRT, and ``output_<backend>.jpg`` / ``output_pytorch.jpg``. A model
with the interactive head also gets ``interactive_decoder.onnx``; the tool then answers clicks
(``--points x,y[,label] ...``, default one positive click at the image centre) with the deployed
model and ``SAM3Predictor`` and prints their largest difference.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Deploy SAM 3 through mmdeploy (three graphs)')
    parser.add_argument('deploy_cfg', help='deploy config (configs/deploy/)')
    parser.add_argument('model_cfg', help='model config')
    parser.add_argument('checkpoint', help='model checkpoint')
    parser.add_argument('img', help='image to export with and run the deployed model on')
    parser.add_argument('--work-dir', required=True, help='where the graphs go')
    parser.add_argument('--texts', nargs='*', default=None,
                        help="phrases to run on IMG (default: the deploy config's "
                        'codebase_config.sam3.phrases)')
    parser.add_argument('--device', default='cpu', help='cpu, or cuda:N (TensorRT needs it)')
    parser.add_argument('--ir-only', action='store_true',
                        help='export the graphs and stop (no engines, no comparison)')
    parser.add_argument('--show-top', type=int, default=5, help='detections printed per model')
    parser.add_argument('--points', nargs='+', default=None, metavar='X,Y[,LABEL]',
                        help='clicks (image pixels, label 1 positive / 0 negative) compared on '
                        'a model with the interactive head (default: one click at the centre)')
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


def parse_points(texts, image):
    """``['x,y[,label]', ...]`` -> ``(points, labels)``; default: a positive centre click."""
    if not texts:
        import mmcv
        h, w = mmcv.imread(image).shape[:2]
        return [[w / 2, h / 2]], [1]
    points, labels = [], []
    for text in texts:
        parts = text.split(',')
        if len(parts) not in (2, 3):
            raise SystemExit(f'--points {text!r}: write x,y or x,y,label (label 1 or 0)')
        points.append([float(parts[0]), float(parts[1])])
        labels.append(int(parts[2]) if len(parts) == 3 else 1)
    return points, labels


def compare_clicks(model, deployed, model_cfg, image, points, labels) -> dict:
    """Largest differences of the PyTorch predictor's and the deployed model's answers to the
    same clicks (multimask and single)."""
    import numpy as np

    from mmsam3.apis import SAM3Predictor
    model.cfg = model_cfg
    predictor = SAM3Predictor(model).set_image(image)
    deployed.set_image(image)
    diff = dict(low_res_logits=0.0, scores=0.0, object_score=0.0, click_mask_pixels=0.0)
    for multimask in (True, False):
        kwargs = dict(points=points, point_labels=labels, multimask_output=multimask)
        a, b = predictor.predict(**kwargs), deployed.predict(**kwargs)
        diff['low_res_logits'] = max(diff['low_res_logits'],
                                     float(np.abs(a['low_res_logits'] -
                                                  b['low_res_logits']).max()))
        diff['scores'] = max(diff['scores'], float(np.abs(a['scores'] - b['scores']).max()))
        diff['object_score'] = max(diff['object_score'],
                                   abs(a['object_score'] - b['object_score']))
        diff['click_mask_pixels'] = max(diff['click_mask_pixels'],
                                        float((a['masks'] != b['masks']).mean()))
    return diff


def main(argv=None):
    args = parse_args(argv)
    from mmdeploy.apis import build_task_processor, torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import get_backend, load_config

    from mmsam3.deploy import MANIFEST_NAME, export_sam3_graphs, load_deploy_cfg
    from mmsam3.deploy.sam3_task import sam3_task_processor

    deploy_cfg = load_deploy_cfg(args.deploy_cfg)
    model_cfg = load_config(args.model_cfg)[0]
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    if args.texts:
        deploy_cfg.codebase_config.setdefault('sam3', {})['phrases'] = list(args.texts)
    backend = get_backend(deploy_cfg).value
    on_cpu = not str(args.device).startswith('cuda')
    if backend == 'tensorrt' and on_cpu and not args.ir_only:
        raise SystemExit(
            f'{args.deploy_cfg} is a TensorRT deploy config and --device is {args.device}: '
            'TensorRT builds and runs engines on a CUDA device. Run with --device cuda:0 where '
            'TensorRT 10 is installed, or add --ir-only to export the graphs here and build '
            'the engines on the device (tools/deployment/build_trt_engines.sh WORK_DIR).')
    manifest = osp.join(args.work_dir, MANIFEST_NAME)
    if backend == 'tensorrt' and on_cpu:
        # mmdeploy's build_task_processor refuses TensorRT + CPU; the export itself traces on
        # the CPU: the same calls torch2onnx makes, with a task processor built without it.
        task = sam3_task_processor(model_cfg, deploy_cfg, args.device)
        model = task.build_pytorch_model(args.checkpoint)
        _, image = task.create_input(args.img, None, model.data_preprocessor)
        export_sam3_graphs(deploy_cfg, model, args.work_dir, image)
    else:
        torch2onnx(args.img, args.work_dir, MANIFEST_NAME, deploy_cfg, model_cfg,
                   args.checkpoint, device=args.device)
    print(f'graphs and manifest: {manifest}')
    if args.ir_only:
        return None
    backend_files = to_backend(backend, [manifest], work_dir=args.work_dir,
                               deploy_cfg=deploy_cfg, device=args.device)
    task = build_task_processor(model_cfg, deploy_cfg, args.device)
    predictions, models = {}, {}
    for name, model in ((backend, task.build_backend_model(backend_files)),
                        ('pytorch', task.build_pytorch_model(args.checkpoint))):
        models[name] = model
        data, _ = task.create_input(args.img, None)
        with torch.no_grad():
            predictions[name] = model.test_step(data)[0]
        task.visualize(args.img, predictions[name], osp.join(args.work_dir, f'output_{name}.jpg'),
                       window_name=name)
    _print_detections('PyTorch', predictions['pytorch'], args.show_top)
    _print_detections(f'deployed ({backend})', predictions[backend], args.show_top)
    diff = compare(predictions['pytorch'], predictions[backend])
    print('max |PyTorch - deployed|: ' + ', '.join(
        f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in diff.items()))
    if getattr(models[backend], 'with_interactive', False):
        points, labels = parse_points(args.points, args.img)
        clicks = compare_clicks(models['pytorch'], models[backend], model_cfg, args.img,
                                points, labels)
        print(f'clicks {points} labels {labels}, max |PyTorch - deployed|: ' +
              ', '.join(f'{k} {v:.3g}' for k, v in clicks.items()))
        diff['clicks'] = clicks
    return diff


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    main()
