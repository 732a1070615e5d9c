"""Inference speed of mmsam3's SAM3 against Meta's official model, in one process.

    python tools/analysis_tools/benchmark.py --size full --runs 3 --warmup 1
    python tools/analysis_tools/benchmark.py --size tiny --runs 20 --device cuda

Both models get the same random weights (converted with our converter) and the same normalised
image; a run is one image and one text prompt end to end (image tower, text tower, fusion
encoder, decoder, heads). Runs of the two models alternate, so background load hits both alike.
Prints the median time of each, the ratio ours / official (<= 1.0 means ours is not slower),
and the cost of 1 vs 10 prompts on one image with our model (the image tower runs once).
Needs the test-only ``sam3`` package and the CLIP BPE vocabulary.

The interactive part (skipped with ``--skip-interactive``) measures, in the same run: this
machine's matmul peak (fp32 and bf16 4096x4096), the time and FLOPs (``torch.utils.flop_counter``)
of every stage of one image + one phrase through
:class:`mmsam3.apis.SAM3Predictor` and the fraction of the peak each stage reaches, the cost of
a second phrase on a set image against Meta's ``Sam3Processor.set_text_prompt``, 10 phrases
against 1 in one call, and bf16 against fp32 (speed, largest score difference, IoU of the
matched top boxes; skipped where the CPU has no native bf16 matmul, which the peak shows)::

    python tools/analysis_tools/benchmark.py --size full --threads 2 --skip-end-to-end
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

from mmsam3.testing import official_sam3

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
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


STAGES = (  # (label, module path in the detector)
    ('ViT', 'backbone'), ('neck', 'neck'), ('text tower', 'text_encoder'),
    ('geometry encoder', 'geometry_encoder'), ('fusion encoder', 'encoder'),
    ('decoder', 'decoder'), ('scoring head', 'bbox_head.scoring_head'),
    ('mask head', 'bbox_head.mask_head'))


def matmul_peak(dtype, device, n=4096, reps=3):
    """Best GFLOP/s of an ``n x n`` matmul in ``dtype`` (2 n^3 FLOPs each) and the ``n`` used.

    A CPU without native bf16 / fp16 (no AVX512-BF16 / AMX) runs them through slow fallback
    kernels; a 1024 probe decides, so that measuring 4096 does not take minutes there.
    """
    def rate(size, count):
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        a @ b
        return 2 * size**3 / min(_timed(lambda: a @ b, device) for _ in range(count)) / 1e9

    probe = rate(1024, 1)
    if probe < 5.0 and device.type == 'cpu':
        return probe, 1024
    return rate(n, reps), n


class StageTimer:
    """Wall time per stage from forward hooks (synchronised on CUDA), plus post-processing."""

    def __init__(self, model, device):
        self.device, self.times, self._start, self.handles = device, {}, {}, []
        modules = dict(model.named_modules())
        for label, path in STAGES:
            if path in modules:
                self.handles += [
                    modules[path].register_forward_pre_hook(self._pre(label)),
                    modules[path].register_forward_hook(self._post(label))]
        self._wrapped = []
        self._time_method(model.bbox_head, 'predict_by_feat', 'post-processing')
        self._time_method(model, 'image_terms', 'image terms')

    def _time_method(self, owner, name, label):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            _sync(self.device)
            self.times[label] = self.times.get(label, 0.0) + time.perf_counter() - start
            return out

        setattr(owner, name, timed)
        self._wrapped.append((owner, name))

    def _restore(self):
        for owner, name in self._wrapped:
            delattr(owner, name)

    def _pre(self, label):
        def hook(module, args):
            _sync(self.device)
            self._start[label] = time.perf_counter()
        return hook

    def _post(self, label):
        def hook(module, args, output):
            _sync(self.device)
            self.times[label] = (self.times.get(label, 0.0) + time.perf_counter() -
                                 self._start.pop(label))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()
        self._restore()


def stage_flops(model, run):
    """FLOPs of each stage (and in total) while ``run()`` executes."""
    from get_flops import flop_counter_mode

    counter = flop_counter_mode()
    image_terms = model.image_terms
    spent = []

    def counted_image_terms(*args, **kwargs):  # a method, not a module: count it by difference
        before = counter.get_total_flops()
        out = image_terms(*args, **kwargs)
        spent.append(counter.get_total_flops() - before)
        return out

    model.image_terms = counted_image_terms
    try:
        with counter:
            run()
    finally:
        del model.image_terms
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    modules = dict(model.named_modules())
    out = {}
    for label, path in STAGES:
        if path not in modules:
            continue
        top, _, rest = path.partition('.')
        key = type(modules[top]).__name__ + ('.' + rest if rest else '')
        out[label] = counts.get(key, 0)
    out['image terms'] = sum(spent)
    out['total'] = counts.get('Global', 0)
    return out


def _synthetic_image(seed=0, size=(600, 800)):
    """An RGB uint8 image of coloured rectangles and discs on a noisy background."""
    import numpy as np
    rng = np.random.default_rng(seed)
    h, w = size
    img = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(12):
        colour = rng.integers(60, 255, 3)
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(20, 120)
        if rng.random() < 0.5:
            img[(yy - cy)**2 + (xx - cx)**2 < r * r] = colour
        else:
            img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = colour
    return img


def _median_time(fn, device, runs):
    times = [_timed(fn, device) for _ in range(runs)]
    return statistics.median(times), times


def _top_box_agreement(ref, got, k=10):
    """Largest |score difference| of the sorted scores and the IoU of each of ``ref``'s top
    ``k`` boxes with its best match among ``got``'s top ``k``."""
    import numpy as np
    from mmdet.structures.bbox import bbox_overlaps
    n = min(len(ref['scores']), len(got['scores']))
    diff = float(np.abs(np.sort(ref['scores'])[::-1][:n] -
                        np.sort(got['scores'])[::-1][:n]).max()) if n else 0.0
    k = min(k, n)
    if k == 0:
        return diff, []
    iou = bbox_overlaps(torch.from_numpy(ref['bboxes'][:k]), torch.from_numpy(got['bboxes'][:k]))
    return diff, iou.max(dim=1).values.tolist()


def _low_precision_is_native(dtype, device, peak):
    if device.type != 'cpu':
        return True
    return peak[dtype] >= peak['fp32']


def measure_peaks(device):
    """fp32 and bf16 matmul peaks (GFLOP/s), printed."""
    peak, sizes = {}, {}
    for name, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
        peak[name], sizes[name] = matmul_peak(dt, device)
    print(f'matmul peak ({device}, {torch.get_num_threads()} threads, CPU capability '
          f'{torch.backends.cpu.get_cpu_capability()}): fp32 {peak["fp32"]:.1f} GFLOP/s '
          f'({sizes["fp32"]}^2), bf16 {peak["bf16"]:.1f} GFLOP/s ({sizes["bf16"]}^2), '
          f'bf16/fp32 {peak["bf16"] / peak["fp32"]:.2f}x', flush=True)
    return peak


def measure_meta_second_phrase(official, resolution, device, runs, warmup):
    """Median time of Meta's ``Sam3Processor.set_text_prompt`` on an image already set."""
    from PIL import Image
    from sam3.model.sam3_image_processor import Sam3Processor

    processor = Sam3Processor(official, resolution=resolution, device=str(device),
                              confidence_threshold=0.5)
    state = processor.set_image(Image.fromarray(_synthetic_image()))
    for _ in range(warmup):
        processor.set_text_prompt(PROMPTS[1], state)
    t_meta, t_runs = _median_time(lambda: processor.set_text_prompt(PROMPTS[2], state), device,
                                  runs)
    print(f'Meta Sam3Processor.set_text_prompt, second phrase: median {t_meta:.3f} s runs '
          f'{[round(t, 3) for t in t_runs]}', flush=True)
    return t_meta, t_runs


def run_interactive(ours, cfg, device, runs, warmup, peak, meta):
    """The interactive / precision / profile measurements (module doc); prints a report.

    ``image + N phrases`` = ``set_image`` + ``predict`` of N phrases, measured separately (the
    two run one after the other; nothing carries over), so the ViT runs once per dtype.
    ``meta`` is :func:`measure_meta_second_phrase`'s result, ``peak`` :func:`measure_peaks`'.
    """
    import numpy as np

    from mmsam3.apis import SAM3Predictor

    bgr = np.ascontiguousarray(_synthetic_image()[:, :, ::-1])
    ours.cfg = cfg
    # Meta's processor keeps the queries scoring > 0.5; ours does the same here.
    ours.bbox_head.test_cfg.update(score_thr=0.5, max_per_img=200)
    t_meta, t_meta_runs = meta

    def say(line=''):
        print(line, flush=True)

    dtypes = ['fp32']
    if _low_precision_is_native('bf16', device, peak):
        dtypes.append('bf16')
    else:
        say('bf16: skipped: this CPU has no native bf16 matmul (measured above), '
            'so bf16 inference here is slower than fp32, not faster')
    results, timings = {}, {}
    for name in dtypes:
        predictor = SAM3Predictor(ours, dtype=name)
        if warmup:
            predictor.set_image(bgr)
            predictor.predict(texts=PROMPTS[0])
        timer = StageTimer(ours, device)
        t_image, _ = _median_time(lambda: predictor.set_image(bgr), device, runs)
        predictor.clear_text_cache()
        t_first, _ = _median_time(
            lambda: (predictor.clear_text_cache(), predictor.predict(texts=PROMPTS[0])),
            device, runs)
        timer.remove()
        stage_times = {k: v / runs for k, v in timer.times.items()}
        # Precision comparison on every query (random weights score few above 0.5).
        thr = ours.bbox_head.test_cfg['score_thr']
        ours.bbox_head.test_cfg['score_thr'] = 0.0
        results[name] = predictor.predict(texts=PROMPTS[0])
        ours.bbox_head.test_cfg['score_thr'] = thr
        t_second, t_second_runs = _median_time(
            lambda: (predictor.clear_text_cache(), predictor.predict(texts=PROMPTS[2])),
            device, runs)
        timings[name] = dict(image=t_image, one=t_image + t_first, second=t_second,
                             stages=stage_times)
        say(f'[{name}] set_image {t_image:.3f} s; first phrase {t_first:.3f} s; image + 1 '
            f'phrase {t_image + t_first:.3f} s; second phrase on the set image: median '
            f'{t_second:.3f} s runs {[round(t, 3) for t in t_second_runs]}')
        if name == 'fp32':
            t_ten, t_ten_runs = _median_time(
                lambda: (predictor.clear_text_cache(), predictor.predict(texts=list(PROMPTS))),
                device, runs)
            timings[name]['ten'] = t_image + t_ten
            say(f'[fp32] 10 phrases in one call on the set image: median {t_ten:.3f} s runs '
                f'{[round(t, 3) for t in t_ten_runs]}; image + 10 phrases {t_image + t_ten:.3f} s'
                f' ({predictor.prompts_per_run or "all"} prompt(s) per run of the prompt stages)')
            per_run, predictor.prompts_per_run = predictor.prompts_per_run, len(PROMPTS)
            t_batch, _ = _median_time(
                lambda: (predictor.clear_text_cache(), predictor.predict(texts=list(PROMPTS))),
                device, 1)
            predictor.prompts_per_run = per_run
            say(f'[fp32] the same 10 phrases in one run of the prompt stages: {t_batch:.3f} s')
            predictor.clear_text_cache()
            flops = stage_flops(ours, lambda: (predictor.set_image(bgr),
                                               predictor.predict(texts=PROMPTS[0])))
        del predictor

    say()
    say(f'stage profile, image + 1 phrase, median of {runs} (FLOPs from FlopCounterMode, '
        'attention included; '
        '%peak = FLOPs / time / matmul peak of the dtype)')
    say(f'{"stage":18s} {"GFLOP":>9s} ' + ' '.join(f'{n + " s":>8s} {n + " %peak":>10s}'
                                                   for n in dtypes))
    labels = [label for label, _ in STAGES]
    labels = labels[:2] + ['image terms'] + labels[2:] + ['post-processing']
    for label in labels + ['sum of stages']:
        gflop = (flops['total'] if label == 'sum of stages' else flops.get(label, 0)) / 1e9
        cells = []
        for name in dtypes:
            st = timings[name]['stages']
            t = sum(st.values()) if label == 'sum of stages' else st.get(label, 0.0)
            frac = gflop / t / peak[name] * 100 if t and gflop else float('nan')
            cells.append(f'{t:8.3f} {frac:10.1f}')
        say(f'{label:18s} {gflop:9.1f} ' + ' '.join(cells))
    say()
    fp32 = timings['fp32']
    say(f'second phrase, predictor fp32 / Meta Sam3Processor.set_text_prompt: '
        f'{fp32["second"]:.3f} / {t_meta:.3f} s = {fp32["second"] / t_meta:.3f} '
        f'(Meta runs {[round(t, 3) for t in t_meta_runs]})')
    image_gflop = sum(flops.get(k, 0) for k in ('ViT', 'neck', 'image terms')) / 1e9
    prompt_gflop = flops['total'] / 1e9 - image_gflop
    say(f'10 phrases / 1 phrase (image included, fp32): {fp32["ten"]:.3f} / {fp32["one"]:.3f} s '
        f'= {fp32["ten"] / fp32["one"]:.2f}x (FLOPs: image {image_gflop:.1f} + prompts '
        f'{prompt_gflop:.1f} per phrase -> '
        f'{(image_gflop + 10 * prompt_gflop) / (image_gflop + prompt_gflop):.2f}x)')
    if 'bf16' in timings:
        bf16 = timings['bf16']
        diff, ious = _top_box_agreement(results['fp32'], results['bf16'])
        iou_text = (f'min {min(ious):.4f} mean {sum(ious) / len(ious):.4f} over the top '
                    f'{len(ious)}' if ious else 'no detection')
        say(f'second phrase bf16 / Meta fp32: {bf16["second"]:.3f} / {t_meta:.3f} s = '
            f'{bf16["second"] / t_meta:.3f}')
        say(f'bf16 vs fp32, image + 1 phrase: {fp32["one"]:.3f} / {bf16["one"]:.3f} s = '
            f'{fp32["one"] / bf16["one"]:.2f}x faster; largest score difference {diff:.2e} '
            f'(sorted scores of all {len(results["fp32"]["scores"])} / '
            f'{len(results["bf16"]["scores"])} queries); top-box IoU {iou_text}')


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
    parser.add_argument('--skip-end-to-end', action='store_true',
                        help='skip the end-to-end comparison (runs only the interactive part)')
    parser.add_argument('--skip-interactive', action='store_true',
                        help='skip the predictor / bf16 / stage-profile part')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    official = official_sam3.build_official_image_model(args.size, seed=0, bpe_path=args.bpe)
    with tempfile.TemporaryDirectory() as tmp:
        state, _ = official_to_ours(official, tmp)
    official = official.to(device).eval()
    if not args.skip_interactive:
        peak = measure_peaks(device)
        meta = measure_meta_second_phrase(
            official, official_sam3.official_sizes(args.size)['img_size'], device, args.runs,
            args.warmup)
    if args.skip_end_to_end:
        del official  # one full-size model in memory at a time
    ours, cfg = build_ours(args.size, state, args.bpe)
    del state
    ours = ours.to(device).eval()
    if not args.skip_interactive:
        run_interactive(ours, cfg, device, args.runs, args.warmup, peak, meta)
    if args.skip_end_to_end:
        return
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
