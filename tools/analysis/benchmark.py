"""Inference speed of mmsam3's SAM3 against Meta's official model, in one process.

    python tools/analysis/benchmark.py --size full --runs 3 --warmup 1
    python tools/analysis/benchmark.py --size tiny --runs 20 --device cuda

Both models get the same random weights (converted with our converter) and the same normalised
image; a run is one image and one text prompt end to end (image tower, text tower, fusion
encoder, decoder, heads). Runs of the two models alternate, so background load hits both alike.
Prints the median time of each, the ratio ours / official (<= 1.0 means ours is not slower),
and the cost of 1 vs 10 prompts on one image with our model (the image tower runs once).
Needs the test-only ``sam3`` package and the CLIP BPE vocabulary.
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import official_sam3  # noqa: E402
from parity_official import build_ours, official_to_ours  # noqa: E402

PROMPTS = ('red apple', 'dog', 'a person riding a bike', 'car', 'tree', 'traffic light',
           'striped cat', 'blue umbrella', 'window', 'shoe')


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', choices=('tiny', 'full'), default='tiny')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--bpe', default=official_sam3.BPE_PATH)
    parser.add_argument('--skip-prompt-scaling', action='store_true',
                        help='only compare against the official model')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    official = official_sam3.build_official_image_model(args.size, seed=0, bpe_path=args.bpe)
    with tempfile.TemporaryDirectory() as tmp:
        state, _ = official_to_ours(official, tmp)
    ours, cfg = build_ours(args.size, state, args.bpe)
    official, ours = official.to(device).eval(), ours.to(device).eval()
    size = cfg.model.backbone.img_size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    image = image.to(device)

    from mmdet.structures import DetDataSample

    def sample(texts):
        return DetDataSample(metainfo=dict(texts=list(texts), img_shape=(size, size),
                                           ori_shape=(size, size), scale_factor=(1.0, 1.0),
                                           batch_input_shape=(size, size)))

    def run_official():
        official_sam3.run_official(official, image, PROMPTS[0])

    def run_ours(n=1):
        with torch.no_grad():
            ours._forward(image, [sample(PROMPTS[:n])])

    for _ in range(args.warmup):
        run_official()
        run_ours()
    t_off, t_ours = [], []
    for _ in range(args.runs):
        t_off.append(_timed(run_official, device))
        t_ours.append(_timed(run_ours, device))
    med_off, med_ours = statistics.median(t_off), statistics.median(t_ours)
    print(f'size={args.size} input={size}x{size} device={device} '
          f'threads={torch.get_num_threads()} runs={args.runs} (warm-up {args.warmup})')
    print(f'official  1 prompt : median {med_off:.3f} s  runs {[round(t, 3) for t in t_off]}')
    print(f'mmsam3    1 prompt : median {med_ours:.3f} s  runs {[round(t, 3) for t in t_ours]}')
    print(f'ratio mmsam3/official: {med_ours / med_off:.3f}')

    if not args.skip_prompt_scaling:
        run_ours(10)
        t_ten = [_timed(lambda: run_ours(10), device) for _ in range(args.runs)]
        med_ten = statistics.median(t_ten)
        print(f'mmsam3   10 prompts: median {med_ten:.3f} s  runs {[round(t, 3) for t in t_ten]}')
        print(f'cost of 10 prompts / 1 prompt: {med_ten / med_ours:.2f}x')


if __name__ == '__main__':
    main()
