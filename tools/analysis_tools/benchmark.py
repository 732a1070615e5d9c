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

How the fp32 / bf16 times are taken: each dtype is warmed up on its own, then the timed runs of
the two alternate (fp32, bf16, fp32, ...), with no stage hook, wrapped method or FLOP counter
(a ``TorchDispatchMode``) in place: every timed run records that it was clean. The stage
profile and the FLOP count run after them, in separate passes. ``set_image`` of fp32 is also
timed alone in a fresh process (same weights, nothing else run before it), and the bf16 speed-up
is printed against both fp32 figures, so a section whose fp32 time is inflated by what ran before
it in the process shows as a disagreement between the two.

The click part (skipped with ``--skip-clicks``; both models then lack the interactive head)
times one click on an image already set: ``SAM3Predictor.predict(points=...)`` against Meta's
``Sam3Image.predict_inst`` (``build_sam3_image_model(enable_inst_interactivity=True)``, the
same random weights converted; see ``parity_interactive.py``), and counts the ViT's forward
calls during the clicks (0: the image tower is not rerun).
"""
import argparse
import gc
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from mmsam3.testing import official_sam3

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from parity_official import build_ours, official_to_ours  # noqa: E402

STANDALONE_TAG = 'STANDALONE_SET_IMAGE '  # the line the fresh process reports on

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
    ('ViT', 'backbone'), ('neck', 'neck'), ('tracker neck', 'tracker_neck'),
    ('text tower', 'text_encoder'), ('geometry encoder', 'geometry_encoder'),
    ('fusion encoder', 'encoder'), ('decoder', 'decoder'),
    ('scoring head', 'bbox_head.scoring_head'), ('mask head', 'bbox_head.mask_head'))
METHODS = (  # (label, owner module path ('' = the detector), method): stages that are methods
    ('image terms', '', 'image_terms'), ('click head, image part', 'interactive_head',
                                         'image_feats'),
    ('post-processing', 'bbox_head', 'predict_by_feat'))
PROFILE_ORDER = ('ViT', 'neck', 'tracker neck', 'image terms', 'click head, image part',
                 'text tower', 'geometry encoder', 'fusion encoder', 'decoder', 'scoring head',
                 'mask head', 'post-processing')


def _methods(model):
    """``(label, owner, name)`` of :data:`METHODS` present in ``model``."""
    modules = dict(model.named_modules())
    return [(label, modules[path], name) for label, path, name in METHODS
            if path in modules and modules[path] is not None and hasattr(modules[path], name)]


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

    probe = rate(min(n, 1024), 1)
    if (probe < 5.0 and device.type == 'cpu') or n <= 1024:
        return probe, min(n, 1024)
    return rate(n, reps), n


class StageTimer:
    """Wall time per stage from forward hooks (synchronised on CUDA), plus post-processing.

    ``StageTimer.active`` counts the timers attached (see :func:`instrumented`).
    """

    active = 0

    def __init__(self, model, device):
        StageTimer.active += 1
        self.device, self.times, self._start, self.handles = device, {}, {}, []
        modules = dict(model.named_modules())
        for label, path in STAGES:
            if path in modules:
                self.handles += [
                    modules[path].register_forward_pre_hook(self._pre(label)),
                    modules[path].register_forward_hook(self._post(label))]
        self._wrapped = []
        for label, owner, name in _methods(model):
            self._time_method(owner, name, label)

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
        self.handles = []
        self._restore()
        StageTimer.active -= 1


def instrumented(model):
    """Why a run of ``model`` now would not be a clean timing (empty: clean): stage hooks /
    wrapped methods of a :class:`StageTimer`, or a ``TorchDispatchMode`` such as the FLOP
    counter (every op goes through Python under it)."""
    reasons = []
    if StageTimer.active:
        reasons.append(f'{StageTimer.active} StageTimer(s) attached')
    wrapped = [label for label, owner, name in _methods(model) if name in vars(owner)]
    if wrapped:
        reasons.append('wrapped: ' + ', '.join(wrapped))
    if is_in_torch_dispatch_mode():
        reasons.append('a TorchDispatchMode (FLOP counter) is active')
    return reasons


def stage_flops(model, run):
    """FLOPs of each stage (and in total) while ``run()`` executes.

    Each stage is counted by difference of the running total around its call (forward hooks
    for modules, wrappers for methods), so two stages of one class (the two necks) stay apart.
    """
    from get_flops import flop_counter_mode

    counter = flop_counter_mode()
    out, handles, wrapped = {}, [], []

    def add(label, before):
        out[label] = out.get(label, 0) + counter.get_total_flops() - before

    modules = dict(model.named_modules())
    for label, path in STAGES:
        if modules.get(path) is None:
            continue
        start = []
        handles += [
            modules[path].register_forward_pre_hook(
                lambda m, a, start=start: start.append(counter.get_total_flops())),
            modules[path].register_forward_hook(
                lambda m, a, o, start=start, label=label: add(label, start.pop()))]
    for label, owner, name in _methods(model):
        def counted(*args, _fn=getattr(owner, name), _label=label, **kwargs):
            before = counter.get_total_flops()
            result = _fn(*args, **kwargs)
            add(_label, before)
            return result

        setattr(owner, name, counted)
        wrapped.append((owner, name))
    try:
        with counter:
            run()
    finally:
        for h in handles:
            h.remove()
        for owner, name in wrapped:
            delattr(owner, name)
    out['total'] = counter.get_total_flops()
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


def measure_peaks(device, n=4096):
    """fp32 and bf16 matmul peaks (GFLOP/s), printed."""
    peak, sizes = {}, {}
    for name, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
        peak[name], sizes[name] = matmul_peak(dt, device, n)
    print(f'matmul peak ({device}, {torch.get_num_threads()} threads, CPU capability '
          f'{torch.backends.cpu.get_cpu_capability()}): fp32 {peak["fp32"]:.1f} GFLOP/s '
          f'({sizes["fp32"]}^2), bf16 {peak["bf16"]:.1f} GFLOP/s ({sizes["bf16"]}^2), '
          f'bf16/fp32 {peak["bf16"] / peak["fp32"]:.2f}x', flush=True)
    return peak


def _click_point(image):
    """One positive click in the middle-left of ``image`` (x, y pixels), as parity uses."""
    h, w = image.shape[:2]
    return [[0.45 * w, 0.5 * h]]


def _count_calls(module):
    """A forward hook counting ``module``'s calls: ``(counter list, handle)``."""
    calls = [0]

    def hook(mod, args, output):
        calls[0] += 1

    return calls, module.register_forward_hook(hook)


def measure_meta(official, resolution, device, runs, warmup, click_runs=0):
    """Meta's side on one image set with ``Sam3Processor``: the median time of
    ``set_text_prompt`` for a second phrase and, with ``click_runs``, of ``predict_inst`` for
    one click (ViT forward calls counted during the clicks). Returns a dict."""
    import numpy as np
    from PIL import Image
    from sam3.model.sam3_image_processor import Sam3Processor

    processor = Sam3Processor(official, resolution=resolution, device=str(device),
                              confidence_threshold=0.5)
    rgb = _synthetic_image()
    trunk = official.backbone.vision_backbone.trunk
    vit_calls, handle = _count_calls(trunk)
    state = processor.set_image(Image.fromarray(rgb))
    vit_at_set_image = vit_calls[0]
    for _ in range(warmup):
        processor.set_text_prompt(PROMPTS[1], state)
    t_meta, t_runs = _median_time(lambda: processor.set_text_prompt(PROMPTS[2], state), device,
                                  runs)
    print(f'Meta Sam3Processor.set_text_prompt, second phrase: median {t_meta:.3f} s runs '
          f'{[round(t, 3) for t in t_runs]}', flush=True)
    out = dict(second=t_meta, second_runs=t_runs)
    if click_runs and getattr(official, 'inst_interactive_predictor', None) is not None:
        point = np.asarray(_click_point(rgb), dtype=np.float32)
        label = np.asarray([1], dtype=np.int64)

        def click():
            return official.predict_inst(state, point_coords=point, point_labels=label,
                                         multimask_output=True)

        for _ in range(max(warmup, 1)):
            click()
        before = vit_calls[0]
        t_click, click_times = _median_time(click, device, click_runs)
        out.update(click=t_click, click_runs=click_times, vit_at_set_image=vit_at_set_image,
                   vit_during_clicks=vit_calls[0] - before)
        print(f'Meta Sam3Image.predict_inst, one click on the set image: median '
              f'{t_click * 1e3:.1f} ms over {click_runs} (ViT forward calls: set_image '
              f'{vit_at_set_image}, during the clicks {vit_calls[0] - before})', flush=True)
    handle.remove()
    return out


def _timed_clean(fn, device, model, log):
    """Time ``fn`` and record in ``log`` whether the run was clean (:func:`instrumented`)."""
    log.append(instrumented(model))
    return _timed(fn, device)


def run_interactive(ours, cfg, device, runs, warmup, peak, meta, click_runs=0,
                    timing_only=False):
    """The interactive / precision / profile / click measurements (module doc); prints them and
    returns them (a dict; :func:`report_bf16_speedup` prints the ratios once the standalone
    fp32 figure is known).

    ``image + N phrases`` = ``set_image`` + ``predict`` of N phrases, timed separately. The
    timed runs of fp32 and bf16 alternate, each dtype warmed up first, with nothing attached
    to the model (:func:`instrumented` is empty for every one of them, recorded in ``clean``);
    the stage profile (hooks) and the FLOP count (a dispatch mode) run afterwards.
    ``meta`` is :func:`measure_meta`'s result, ``peak`` :func:`measure_peaks`'.
    ``timing_only`` keeps the timed fp32 / bf16 runs and the clicks (no 10 phrases, stage
    profile, FLOPs or precision comparison).
    """
    import numpy as np

    from mmsam3.apis import SAM3Predictor
    from mmsam3.utils.inference_precision import set_inference_dtype

    rgb = _synthetic_image()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ours.cfg = cfg
    # Meta's processor keeps the queries scoring > 0.5; ours does the same here.
    ours.bbox_head.test_cfg.update(score_thr=0.5, max_per_img=200)

    def say(line=''):
        print(line, flush=True)

    def runs_text(times, scale=1.0, digits=3):
        return [round(t * scale, digits) for t in times]

    dtypes = ['fp32']
    if _low_precision_is_native('bf16', device, peak):
        dtypes.append('bf16')
    else:
        say('bf16: skipped: this CPU has no native bf16 matmul (measured above), '
            'so bf16 inference here is slower than fp32, not faster')
    # One model serves both predictors; the dtype's hooks (set_inference_dtype) are set
    # before each call, outside the timed region.
    predictors = {name: SAM3Predictor(ours, dtype=name) for name in dtypes}

    def use(name):
        set_inference_dtype(ours, predictors[name].dtype)
        return predictors[name]

    def first_phrase(p):
        p.clear_text_cache()
        return p.predict(texts=PROMPTS[0])

    def second_phrase(p):
        p.clear_text_cache()
        return p.predict(texts=PROMPTS[2])

    for name in dtypes:  # each dtype's own warm-up (first-call costs, oneDNN primitives)
        p = use(name)
        for _ in range(warmup):
            p.set_image(bgr)
            first_phrase(p)
    keys = ('image', 'first', 'second')
    timed = {name: {**{k: [] for k in keys}, 'checks': []} for name in dtypes}
    for _ in range(runs):  # interleaved: fp32, bf16, fp32, bf16, ...
        for name in dtypes:
            p = use(name)
            log = timed[name]['checks']
            timed[name]['image'].append(_timed_clean(lambda: p.set_image(bgr), device, ours, log))
            timed[name]['first'].append(_timed_clean(lambda: first_phrase(p), device, ours, log))
            timed[name]['second'].append(_timed_clean(lambda: second_phrase(p), device, ours,
                                                      log))
    timings = {}
    for name in dtypes:
        t = {k: statistics.median(timed[name][k]) for k in keys}
        t['one'] = t['image'] + t['first']
        t['clean'] = not any(timed[name]['checks'])
        timings[name] = t
        say(f'[{name}] set_image median {t["image"]:.3f} s runs '
            f'{runs_text(timed[name]["image"])}; first phrase {t["first"]:.3f} s; image + 1 '
            f'phrase {t["one"]:.3f} s; second phrase on the set image: median '
            f'{t["second"]:.3f} s runs {runs_text(timed[name]["second"])} '
            f'({"clean" if t["clean"] else "NOT clean"} timed runs, '
            f'{" / ".join(dtypes)} interleaved, warm-up {warmup})')

    out = dict(dtypes=dtypes, timed=timed, timings=timings)
    fp32 = timings['fp32']
    if timing_only:
        for name in dtypes[1:]:
            say(f'second phrase {name} / Meta fp32: {timings[name]["second"]:.3f} / '
                f'{meta["second"]:.3f} s = {timings[name]["second"] / meta["second"]:.3f}')
    else:
        p = use('fp32')
        p.set_image(bgr)
        ten_log = []
        t_ten_runs = [_timed_clean(lambda: (p.clear_text_cache(), p.predict(texts=list(PROMPTS))),
                                   device, ours, ten_log) for _ in range(runs)]
        t_ten = statistics.median(t_ten_runs)
        timings['fp32']['ten'] = timings['fp32']['image'] + t_ten
        say(f'[fp32] 10 phrases in one call on the set image: median {t_ten:.3f} s runs '
            f'{runs_text(t_ten_runs)}; image + 10 phrases {timings["fp32"]["ten"]:.3f} s'
            f' ({p.prompts_per_run or "all"} prompt(s) per run of the prompt stages)')
        per_run, p.prompts_per_run = p.prompts_per_run, len(PROMPTS)
        t_batch = _timed_clean(lambda: (p.clear_text_cache(), p.predict(texts=list(PROMPTS))),
                               device, ours, ten_log)
        p.prompts_per_run = per_run
        say(f'[fp32] the same 10 phrases in one run of the prompt stages: {t_batch:.3f} s')

        # Stage profile: one more image + phrase per dtype with the hooks on (not used for ratios).
        profile, profile_checks = {}, {}
        for name in dtypes:
            p = use(name)
            timer = StageTimer(ours, device)
            profile_checks[name] = instrumented(ours)
            try:
                p.set_image(bgr)
                first_phrase(p)
            finally:
                timer.remove()
            profile[name] = dict(timer.times)
        # Precision comparison on every query (random weights score few above 0.5).
        results = {}
        thr = ours.bbox_head.test_cfg['score_thr']
        ours.bbox_head.test_cfg['score_thr'] = 0.0
        for name in dtypes:
            p = use(name)
            p.set_image(bgr)
            results[name] = first_phrase(p)
        ours.bbox_head.test_cfg['score_thr'] = thr
        p = use('fp32')
        p.clear_text_cache()
        flops = stage_flops(ours, lambda: (p.set_image(bgr), p.predict(texts=PROMPTS[0])))

        say()
        say('stage profile, image + 1 phrase, one run with the stage hooks on (not the timed runs '
            'above; FLOPs from FlopCounterMode, attention included; '
            '%peak = FLOPs / time / matmul peak of the dtype)')
        say(f'{"stage":18s} {"GFLOP":>9s} ' + ' '.join(f'{n + " s":>8s} {n + " %peak":>10s}'
                                                       for n in dtypes))
        labels = [label for label in PROFILE_ORDER
                  if any(label in profile[name] for name in dtypes) or flops.get(label)]
        for label in labels + ['sum of stages']:
            gflop = (flops['total'] if label == 'sum of stages' else flops.get(label, 0)) / 1e9
            cells = []
            for name in dtypes:
                st = profile[name]
                t = sum(st.values()) if label == 'sum of stages' else st.get(label, 0.0)
                frac = gflop / t / peak[name] * 100 if t and gflop else float('nan')
                cells.append(f'{t:8.3f} {frac:10.1f}')
            say(f'{label:18s} {gflop:9.1f} ' + ' '.join(cells))
        say()
        image_gflop = sum(flops.get(k, 0) for k in ('ViT', 'neck', 'tracker neck', 'image terms',
                                                     'click head, image part')) / 1e9
        prompt_gflop = flops['total'] / 1e9 - image_gflop
        say(f'10 phrases / 1 phrase (image included, fp32): {fp32["ten"]:.3f} / '
            f'{fp32["one"]:.3f} s = {fp32["ten"] / fp32["one"]:.2f}x (FLOPs: image '
            f'{image_gflop:.1f} + prompts {prompt_gflop:.1f} per phrase -> '
            f'{(image_gflop + 10 * prompt_gflop) / (image_gflop + prompt_gflop):.2f}x)')
        agreement = None
        if 'bf16' in timings:
            bf16 = timings['bf16']
            diff, ious = _top_box_agreement(results['fp32'], results['bf16'])
            agreement = (diff, ious)
            iou_text = (f'min {min(ious):.4f} mean {sum(ious) / len(ious):.4f} over the top '
                        f'{len(ious)}' if ious else 'no detection')
            say(f'second phrase bf16 / Meta fp32: {bf16["second"]:.3f} / {meta["second"]:.3f} s = '
                f'{bf16["second"] / meta["second"]:.3f}')
            say(f'bf16 vs fp32 precision: largest score difference {diff:.2e} (sorted scores of '
                f'all {len(results["fp32"]["scores"])} / {len(results["bf16"]["scores"])} '
                f'queries); top-box IoU {iou_text}')
        out.update(ten_checks=ten_log, profile=profile, profile_checks=profile_checks,
                   flops=flops, agreement=agreement)
    say(f'second phrase, predictor fp32 / Meta Sam3Processor.set_text_prompt: '
        f'{fp32["second"]:.3f} / {meta["second"]:.3f} s = {fp32["second"] / meta["second"]:.3f} '
        f'(Meta runs {runs_text(meta["second_runs"])})')
    set_inference_dtype(ours, 'fp32')  # leave no dtype hooks on the model
    if click_runs and getattr(ours, 'with_interactive', False):
        out['clicks'] = measure_clicks(ours, use('fp32'), bgr, _click_point(rgb), device,
                                       click_runs, warmup, meta)
    return out


def measure_clicks(ours, predictor, bgr, point, device, click_runs, warmup, meta):
    """One click on the image already set: median time of ``SAM3Predictor.predict(points=)``,
    the ViT's forward calls during the clicks, and the comparison with Meta's
    ``predict_inst`` (``meta['click']``). Prints and returns a dict."""
    vit_calls, handle = _count_calls(ours.backbone)
    try:
        predictor.set_image(bgr)
        vit_at_set_image = vit_calls[0]

        def click():
            return predictor.predict(points=point, point_labels=[1], multimask_output=True)

        for _ in range(max(warmup, 1)):
            click()
        before, checks = vit_calls[0], []
        times = [_timed_clean(click, device, ours, checks) for _ in range(click_runs)]
        vit_during = vit_calls[0] - before
    finally:
        handle.remove()
    t_click = statistics.median(times)
    out = dict(click=t_click, click_runs=times, vit_at_set_image=vit_at_set_image,
               vit_during_clicks=vit_during, clean=not any(checks))
    print(f'predictor fp32, one click on the set image: median {t_click * 1e3:.1f} ms over '
          f'{click_runs} (runs {[round(t * 1e3, 1) for t in times]} ms; ViT forward calls: '
          f'set_image {vit_at_set_image}, during the clicks {vit_during})', flush=True)
    if 'click' in meta:
        ratio = t_click / meta['click']
        out['ratio'] = ratio
        print(f'one click, predictor / Meta predict_inst: {t_click * 1e3:.1f} / '
              f'{meta["click"] * 1e3:.1f} ms = {ratio:.3f} (target <= 1; ViT rerun: ours '
              f'{"no" if vit_during == 0 else "YES"}, Meta '
              f'{"no" if meta["vit_during_clicks"] == 0 else "YES"}; target < 50 ms on 2 CPU '
              f'cores: {t_click * 1e3:.1f} ms)', flush=True)
    return out


def report_bf16_speedup(section, standalone):
    """Print bf16's speed-up against the section's fp32 and against the standalone fp32
    ``set_image`` (a fresh process), and whether they agree; returns the ratios."""
    timings = section['timings']
    fp32 = timings['fp32']
    print()
    line = (f'fp32 set_image: section {fp32["image"]:.3f} s (clean, interleaved), standalone '
            f'{standalone["image"]:.3f} s (fresh process, runs '
            f'{[round(t, 3) for t in standalone["image_runs"]]})')
    ratios = dict(section_vs_standalone=fp32['image'] / standalone['image'])
    print(f'{line}: section / standalone {ratios["section_vs_standalone"]:.3f}')
    if 'bf16' not in timings:
        print('bf16 vs fp32: skipped (no native bf16 matmul on this CPU)')
        return ratios
    bf16 = timings['bf16']
    standalone_one = standalone['image'] + fp32['first']
    ratios.update(image_section=fp32['image'] / bf16['image'],
                  image_standalone=standalone['image'] / bf16['image'],
                  one_section=fp32['one'] / bf16['one'],
                  one_standalone=standalone_one / bf16['one'])
    print(f'bf16 vs fp32, set_image: {ratios["image_section"]:.2f}x faster than the '
          f'section\'s fp32 ({fp32["image"]:.3f} / {bf16["image"]:.3f} s), '
          f'{ratios["image_standalone"]:.2f}x faster than the standalone fp32 '
          f'({standalone["image"]:.3f} / {bf16["image"]:.3f} s)')
    print(f'bf16 vs fp32, image + 1 phrase: {ratios["one_section"]:.2f}x faster than the '
          f'section\'s fp32 ({fp32["one"]:.3f} / {bf16["one"]:.3f} s), '
          f'{ratios["one_standalone"]:.2f}x faster than standalone fp32 set_image + the '
          f'section\'s first phrase ({standalone_one:.3f} / {bf16["one"]:.3f} s)')
    gap = abs(ratios['section_vs_standalone'] - 1)
    print(f'the two fp32 set_image figures {"agree" if gap <= 0.1 else "DISAGREE"} '
          f'({gap:.0%} apart; > 10% means something in this process slowed or sped up fp32: '
          'trust neither ratio, rerun)')
    return ratios


def _standalone_set_image(args):
    """Child process of :func:`measure_standalone`: fp32 ``set_image`` alone, one JSON line."""
    import numpy as np

    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmsam3.apis import SAM3Predictor

    init_default_scope('mmdet')
    configs = official_sam3.INTERACTIVE_CONFIGS if args.interactive else \
        official_sam3.MODEL_CONFIGS
    cfg = Config.fromfile(configs[args.size])
    cfg.model.tokenizer.bpe_path = args.bpe
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(args.standalone_set_image, weights_only=True)['state_dict'],
                          strict=True)
    model = model.to(args.device).eval()
    model.cfg = cfg
    predictor = SAM3Predictor(model, dtype='fp32')
    bgr = np.ascontiguousarray(_synthetic_image()[:, :, ::-1])
    for _ in range(args.warmup):
        predictor.set_image(bgr)
    device = torch.device(args.device)
    times = [_timed(lambda: predictor.set_image(bgr), device) for _ in range(args.runs)]
    print(STANDALONE_TAG + json.dumps(dict(image=statistics.median(times), image_runs=times,
                                           pid=os.getpid(),
                                           threads=torch.get_num_threads())), flush=True)


def measure_standalone(weights, args):
    """fp32 ``set_image`` of ``weights`` in a fresh process (nothing else run there before);
    ``{'image': median s, 'image_runs': [...], 'pid', 'threads'}``."""
    cmd = [sys.executable, osp.abspath(__file__), '--standalone-set-image', weights,
           '--size', args.size, '--runs', str(args.runs), '--warmup', str(args.warmup),
           '--device', args.device, '--bpe', args.bpe]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    if not args.skip_clicks:
        cmd.append('--interactive')
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(STANDALONE_TAG)]
    if proc.returncode or not lines:
        raise RuntimeError(f'the standalone set_image process failed (exit {proc.returncode}):\n'
                           + proc.stderr[-3000:])
    return json.loads(lines[-1][len(STANDALONE_TAG):])


def _build_official(args, workdir):
    """Meta's model (with the click head unless ``--skip-clicks``) and the path of the same
    weights converted to mmsam3's layout (``{'state_dict': ...}``)."""
    if args.skip_clicks:
        official = official_sam3.build_official_image_model(args.size, seed=0,
                                                            bpe_path=args.bpe)
        state, _ = official_to_ours(official, workdir)
        weights = osp.join(workdir, 'mmsam3.pth')
        torch.save(dict(state_dict=state), weights)
        return official, weights
    from parity_interactive import build_pair
    return build_pair(args.size, 0, workdir, args.bpe)


def _build_ours(args, weights):
    if args.skip_clicks:
        return build_ours(args.size, torch.load(weights, weights_only=True)['state_dict'],
                          args.bpe)
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(official_sam3.INTERACTIVE_CONFIGS[args.size])
    cfg.model.tokenizer.bpe_path = args.bpe
    # Meta's CPU post-processing skips the hole filling (no connected-components kernel);
    # ours does the same here (see parity_interactive.py).
    cfg.model.interactive_head.max_hole_area = 0.0
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(weights, weights_only=True)['state_dict'], strict=True)
    return model.eval(), cfg


def parse_args(argv=None):
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
                        help='skip the predictor / bf16 / stage-profile / click part')
    parser.add_argument('--skip-clicks', action='store_true',
                        help='models without the interactive (click) head; no click timing')
    parser.add_argument('--skip-standalone', action='store_true',
                        help='no fresh-process fp32 set_image (the bf16 ratio against it)')
    parser.add_argument('--timing-only', action='store_true',
                        help='interactive part: only the timed fp32 / bf16 runs, the standalone '
                        'fp32 and the clicks (no 10 phrases, stage profile, FLOPs, precision)')
    parser.add_argument('--click-runs', type=int, default=20,
                        help='timed clicks of each model (median)')
    parser.add_argument('--peak-size', type=int, default=4096,
                        help='n of the n x n matmul that measures the peak')
    parser.add_argument('--standalone-set-image', metavar='WEIGHTS', default=None,
                        help=argparse.SUPPRESS)  # the fresh process of measure_standalone
    parser.add_argument('--interactive', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ('runs', 'click_runs', 'peak_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


def main(argv=None):
    """Runs the benchmark; returns what the interactive part measured (a dict, or None)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.standalone_set_image:
        return _standalone_set_image(args)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        return _run(args, device, tmp)


def _run(args, device, tmp):
    official, weights = _build_official(args, tmp)
    official = official.to(device).eval()
    report = None
    if not args.skip_interactive:
        peak = measure_peaks(device, args.peak_size)
        meta = measure_meta(official, official_sam3.official_sizes(args.size)['img_size'],
                            device, args.runs, args.warmup,
                            0 if args.skip_clicks else args.click_runs)
    if args.skip_end_to_end:
        del official  # one full-size model in memory at a time
        gc.collect()
    ours, cfg = _build_ours(args, weights)
    ours = ours.to(device).eval()
    if not args.skip_interactive:
        report = run_interactive(ours, cfg, device, args.runs, args.warmup, peak, meta,
                                 0 if args.skip_clicks else args.click_runs, args.timing_only)
        report['meta'] = meta
    if not args.skip_end_to_end:
        run_end_to_end(args, official, ours, cfg, device)
        del official
    if report is not None and not args.skip_standalone:
        del ours  # the fresh process loads its own copy
        gc.collect()
        report['standalone'] = measure_standalone(weights, args)
        report['ratios'] = report_bf16_speedup(report, report['standalone'])
    return report


def run_end_to_end(args, official, ours, cfg, device):
    """One image + one phrase end to end, ours and Meta's alternating; 1 vs 10 prompts."""
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
