"""Evaluate a deployed SAM 3 (ONNX Runtime graphs or TensorRT engines) with the model config's
test dataloader and metrics (COCO box / mask AP, cgF1), as ``tools/test.py`` does for PyTorch.

    python tools/deployment/test.py configs/deploy/instance-seg_onnxruntime_static-1008x1008.py \
        configs/sam3/sam3_vit-l_zeroshot_coco.py --model work_dirs/sam3_onnx/sam3_graphs.json

The calls of mmdeploy's ``tools/test.py`` (the ``mmsam3`` task processor builds the dataset,
the backend model and mmdeploy's test runner), plus ``--text-cache``, ``--out`` and a TensorRT
deploy config's ONNX graphs checked on ONNX Runtime on a CPU host.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a deployed SAM 3')
    parser.add_argument('deploy_cfg', help='deploy config (configs/deploy/)')
    parser.add_argument('model_cfg', help='model config (test dataloader / evaluator)')
    parser.add_argument('--model', nargs='+', required=True,
                        help='sam3_graphs.json (what mmdeploy\'s tools/deploy.py leaves), graph '
                        'files (.onnx / .engine) with it, or the work dir')
    parser.add_argument('--backend', choices=['onnxruntime', 'tensorrt'], default=None,
                        help='default: by the files (.engine: TensorRT, else ONNX Runtime); '
                        'tensorrt picks the engines of a work dir')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--text-cache', help='text-feature cache (tools/deployment/'
                        'encode_texts.py) used before the text graph')
    parser.add_argument('--work-dir', help='where logs / metrics go')
    parser.add_argument('--out', help='dump predictions to a pickle file (.pkl)')
    parser.add_argument('--num-threads', type=int, default=None, help='ONNX Runtime threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='model config overrides key=value')
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must be a .pkl file')
    return args


def main(argv=None):
    args = parse_args(argv)
    from copy import deepcopy

    from mmdeploy.utils import load_config
    from mmdet.evaluation import DumpDetResults

    from mmsam3.deploy import load_deploy_cfg
    from mmsam3.deploy.sam3_task import sam3_task_processor

    deploy_cfg = load_deploy_cfg(args.deploy_cfg)
    model_cfg = load_config(args.model_cfg)[0]
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    files = list(args.model)
    if args.backend == 'tensorrt' and not any(f.endswith('.engine') for f in files):
        raise SystemExit('--backend tensorrt needs the .engine files (or their work dir)')
    if len(files) == 1 and osp.isdir(files[0]):
        suffix = '.engine' if args.backend == 'tensorrt' else '.onnx'
        files = [osp.join(files[0], f) for f in sorted(os.listdir(files[0]))
                 if f.endswith((suffix, '.json'))]
    task = sam3_task_processor(model_cfg, deploy_cfg, args.device)
    loader = deepcopy(model_cfg.test_dataloader)
    loader['dataset'] = task.build_dataset(loader['dataset'])
    dataloader = task.build_dataloader(loader)
    model = task.build_backend_model(files, task.update_data_preprocessor,
                                     text_cache=args.text_cache, num_threads=args.num_threads)
    work_dir = args.work_dir or osp.join('./work_dirs', 'deploy_test',
                                         osp.splitext(osp.basename(args.model_cfg))[0])
    runner = task.build_test_runner(model, work_dir, dataloader=dataloader)
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    model.destroy()
    return metrics


if __name__ == '__main__':
    main()
