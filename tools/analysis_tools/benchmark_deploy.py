"""Speed of the deployed SAM 3 (three ONNX graphs on ONNX Runtime) against PyTorch, side by side.

    python tools/analysis_tools/benchmark_deploy.py --size full --runs 3 --warmup 1 --threads 2
    python tools/analysis_tools/benchmark_deploy.py --size tiny --runs 10

Both run the same model (random weights, seed 0) on the same normalised image, CPU. One run is
one image end to end (vision tower, text tower, prompt decoder, post-processing). Per round the
three cases alternate, so background load hits them alike: PyTorch with 1 prompt, the deployed
model with 1 prompt, the deployed model with 10 prompts. Prints the medians, the ratio
ONNX Runtime / PyTorch (1 prompt), the ratio 10 / 1 prompts of the deployed model, and the
largest score / box difference of the 1-prompt outputs. ``--work-dir`` reuses (or keeps) the
exported graphs; otherwise they go to a temporary directory.
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PROMPTS = ('red apple', 'dog', 'a person riding a bike', 'car', 'tree', 'traffic light',
           'striped cat', 'blue umbrella', 'window', 'shoe')
SIZES = dict(full=('configs/_base_/models/sam3_vit-l.py', 1008),
             tiny=('configs/_base_/models/sam3_tiny.py', 168))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', choices=sorted(SIZES), default='tiny')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--work-dir', help='graphs to reuse, or where to keep new ones')
    parser.add_argument('--prompts-per-run', type=int, default=None,
                        help='prompts per decoder run of the deployed model (memory bound; '
                        'default: the export\'s max_prompts; 2 keeps a 1008 px run under '
                        '~16 GB on ONNX Runtime)')
    parser.add_argument('--bpe-path', default=osp.join(REPO, '..', 'shared', 'data',
                                                       'bpe_simple_vocab_16e6.txt.gz'))
    return parser.parse_args(argv)


def build_model(size, bpe_path):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, SIZES[size][0]))
    cfg.model.tokenizer.bpe_path = bpe_path
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval(), cfg


def make_sample(texts, hw):
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(texts=list(texts), img_shape=hw, ori_shape=hw,
                                       batch_input_shape=hw, scale_factor=(1.0, 1.0)))


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    from mmsam3.deploy import MANIFEST_NAME, DeployedSAM3, export_sam3_graphs
    from mmsam3.utils import proc_status_mib
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model, cfg = build_model(args.size, args.bpe_path)
    size = SIZES[args.size][1]
    deploy_cfg = osp.join(REPO, 'configs', 'deploy',
                          f'instance-seg_onnxruntime_static-{size}x{size}.py')
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='sam3_bench_')
    if not osp.isfile(osp.join(work_dir, MANIFEST_NAME)):
        start = time.perf_counter()
        export_sam3_graphs(deploy_cfg, model, work_dir)
        print(f'export: {time.perf_counter() - start:.1f} s -> {work_dir}')
    deployed = DeployedSAM3(cfg, work_dir, num_threads=args.threads,
                            prompts_per_run=args.prompts_per_run)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    hw = (size, size)
    one, ten = make_sample(PROMPTS[:1], hw), make_sample(PROMPTS, hw)
    cases = {
        'pytorch, 1 prompt': lambda: model.predict(x, [one.clone()]),
        'onnxruntime, 1 prompt': lambda: deployed.predict(x, [one.clone()]),
        'onnxruntime, 10 prompts': lambda: deployed.predict(x, [ten.clone()]),
    }
    times = {k: [] for k in cases}
    for r in range(args.warmup + args.runs):
        for name, fn in cases.items():
            t = timed(fn)
            if r >= args.warmup:
                times[name].append(t)
        print(f'round {r + 1}: ' + ', '.join(f'{k} {v[-1]:.3f} s' for k, v in times.items()
                                             if v and r >= args.warmup))
    med = {k: statistics.median(v) for k, v in times.items()}
    a = model.predict(x, [one.clone()])[0].pred_instances
    b = deployed.predict(x, [one.clone()])[0].pred_instances
    n = min(len(a), len(b))
    print(f'\nsize {args.size} ({size}x{size}), CPU, {args.threads} threads, median of '
          f'{args.runs} runs after {args.warmup} warm-up, deployed model runs at most '
          f'{deployed.max_prompts} prompts per decoder call')
    for k, v in med.items():
        print(f'  {k:<26} {v:8.3f} s   runs {[round(t, 3) for t in times[k]]}')
    ort_vs_torch = med['onnxruntime, 1 prompt'] / med['pytorch, 1 prompt']
    ten_vs_one = med['onnxruntime, 10 prompts'] / med['onnxruntime, 1 prompt']
    print(f'  onnxruntime / pytorch (1 prompt): {ort_vs_torch:.3f}')
    print(f'  10 / 1 prompts (onnxruntime):     {ten_vs_one:.3f}')
    print(f'  max |score diff| {float((a.scores[:n] - b.scores[:n]).abs().max()):.2e}, '
          f'max |box diff| {float((a.bboxes[:n] - b.bboxes[:n]).abs().max()):.2e} px')
    peak = proc_status_mib('VmHWM')
    if peak:
        print(f'  peak resident memory of this process (PyTorch model + 3 sessions): '
              f'{peak / 1024:.1f} GiB')
    return med


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
