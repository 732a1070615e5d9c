"""Evaluate a deployed SAM 3 (ONNX Runtime graphs or TensorRT engines) with the model config's
test dataloader and metrics (COCO box / mask AP, cgF1), as ``tools/test.py`` does for PyTorch.

    python tools/deployment/test.py configs/deploy/instance-seg_onnxruntime_static-1008x1008.py \
        configs/sam3/sam3_vit-l_zeroshot_coco.py --model work_dirs/sam3_onnx/*.onnx \
        work_dirs/sam3_onnx/sam3_graphs.json

Like mmdeploy's ``tools/test.py``: the deployed model is wrapped as a model and run by mmdeploy's
``DeployTestRunner`` (an mmengine ``Runner``) with the config's ``test_dataloader`` and
``test_evaluator``. mmdeploy's task processor is not used: none of its tasks builds a model
from several graphs with text inputs.
"""
import argparse
import os.path as osp

import mmsam3  # noqa: F401  (registers modules)
from mmengine.config import Config, DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a deployed SAM 3')
    parser.add_argument('deploy_cfg', help='deploy config (configs/deploy/)')
    parser.add_argument('model_cfg', help='model config (test dataloader / evaluator)')
    parser.add_argument('--model', nargs='+', required=True,
                        help='graph files (.onnx / .engine) and sam3_graphs.json, or the work '
                        'dir of tools/deployment/deploy.py')
    parser.add_argument('--backend', choices=['onnxruntime', 'tensorrt'], default=None,
                        help='default: the deploy config backend (.engine files need tensorrt)')
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
    from mmdeploy.codebase.base.runner import DeployTestRunner
    from mmdet.evaluation import DumpDetResults

    from mmsam3.deploy import DeployedSAM3, load_deploy_cfg

    deploy_cfg = load_deploy_cfg(args.deploy_cfg)
    model_cfg = Config.fromfile(args.model_cfg)
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    backend = args.backend or deploy_cfg.backend_config.type
    if backend == 'tensorrt' and all(f.endswith('.onnx') for f in args.model):
        backend = 'onnxruntime'  # a TensorRT deploy config's ONNX graphs, checked on ORT
    model = DeployedSAM3(model_cfg, args.model, backend=backend, text_cache=args.text_cache,
                         device=args.device, num_threads=args.num_threads)
    work_dir = args.work_dir or osp.join('./work_dirs', 'deploy_test',
                                         osp.splitext(osp.basename(args.model_cfg))[0])
    runner = DeployTestRunner(
        model=model, work_dir=work_dir, device=args.device,
        default_hooks=model_cfg.get('default_hooks'), test_dataloader=model_cfg.test_dataloader,
        test_cfg=model_cfg.get('test_cfg', dict(type='TestLoop')),
        test_evaluator=model_cfg.test_evaluator,
        default_scope=model_cfg.get('default_scope', 'mmdet'))
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    return runner.test()


if __name__ == '__main__':
    main()
