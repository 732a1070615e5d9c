"""Full-size structural check of the SAM3-Small tiers (random weights in the official layout).

    python tools/analysis_tools/small_tiers_check.py --work-dir work_dirs/small_tiers
    python tools/analysis_tools/small_tiers_check.py --skip-latency --skip-memory   # structure only

1. Meta's full image model is built with random weights (``mmsam3.testing.official_sam3``, needs
   the test-only ``sam3`` package), saved in the official checkpoint layout and converted with
   our converter: the teacher checkpoint, loaded strictly into
   ``configs/sam3_vit-l_1008_zeroshot.py``;
2. ``tools/model_converters/compress_sam3.py`` compresses it into the identity student (the
   teacher's own config: its outputs must equal the teacher's to 1e-5) and into each
   ``configs/sam3_small`` tier; each result loads with ``strict=True`` into its tier config and
   runs through ``tools/demo.py``;
3. parameters, image-tower and per-prompt GFLOPs (``get_flops.count_complexity``), CPU latency of
   one image + one prompt, teacher and student alternating in one process, and an Orin Nano
   Super latency *estimate* from the FLOPs (``--orin-tflops`` peak fp16 at ``--utilisation``);
4. ``tools/analysis_tools/train_memory.py`` on each tier's distillation config (one training
   step, batch 1; CPU peak RSS here, CUDA max allocated on a GPU).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
for sub in ('tools/analysis_tools', 'tools/model_converters', ''):
    if osp.join(REPO, sub) not in sys.path:
        sys.path.insert(0, osp.join(REPO, sub))

TEACHER_CFG = 'configs/sam3_vit-l_1008_zeroshot.py'
TIERS = {
    'S': ('configs/sam3_small/sam3-small-s_vit16_672_zeroshot.py',
          'configs/sam3_small/sam3-small-s_vit16_672_distill_1xb1_coco.py'),
    'XS': ('configs/sam3_small/sam3-small-xs_vit8-768_672_zeroshot.py',
           'configs/sam3_small/sam3-small-xs_vit8-768_672_distill_1xb1_coco.py'),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/small_tiers')
    p.add_argument('--tiers', nargs='+', default=list(TIERS), choices=list(TIERS))
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--runs', type=int, default=2, help='timed runs per model (alternating)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--skip-latency', action='store_true')
    p.add_argument('--skip-memory', action='store_true')
    p.add_argument('--orin-tflops', type=float, default=17.0,
                   help='Orin Nano Super peak dense fp16 TFLOP/s (estimate input)')
    p.add_argument('--utilisation', type=float, default=0.3,
                   help='assumed fraction of the peak a TensorRT fp16 engine sustains')
    p.add_argument('--bpe-path', default=None)
    return p.parse_args(argv)


def teacher_checkpoint(work_dir, seed, bpe_path):
    """Official model, random weights -> official layout file -> our converter -> .pth."""
    from mmsam3.testing import official_sam3
    from mmsam3.utils.atomic_save import atomic_torch_save
    from parity_official import official_to_ours
    path = osp.join(work_dir, f'teacher_random_seed{seed}.pth')
    if not osp.isfile(path):
        official = official_sam3.build_official_image_model('full', seed=seed, bpe_path=bpe_path)
        state, _ = official_to_ours(official, work_dir)
        del official
        atomic_torch_save(dict(state_dict=state, meta=dict(random_official_seed=seed)), path)
    return path


def demo_image(path, size=(480, 640)):
    import mmcv
    import numpy as np
    rng = np.random.default_rng(0)
    img = np.full(size + (3, ), 200, np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, size[0] - 80), rng.integers(0, size[1] - 80)
        img[y:y + 80, x:x + 80] = rng.integers(0, 255, 3)
    mmcv.imwrite(img, path)
    return path


def one_prompt(model, size):
    from get_flops import _prompt_samples
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return x, _prompt_samples((size, size), 1)


def max_abs_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a if a[k] is not None)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import compress_sam3 as tool
    from get_flops import count_complexity
    from mmdet.registry import MODELS
    work = osp.join(REPO, args.work_dir)
    os.makedirs(work, exist_ok=True)
    bpe = args.bpe_path or tool.DEFAULT_BPE
    t0 = time.time()
    teacher_ckpt = teacher_checkpoint(work, args.seed, bpe)
    print(f'teacher checkpoint (random official weights, converted): {teacher_ckpt} '
          f'({time.time() - t0:.0f} s)')
    results = dict(tiers={})

    from mmsam3.compression import compress_sam3, load_teacher
    from mmsam3.utils.atomic_save import atomic_torch_save
    t_cfg = tool.load_model_cfg(osp.join(REPO, TEACHER_CFG), bpe).model
    teacher = load_teacher(t_cfg, teacher_ckpt)
    # identity compression (the teacher's own config) reproduces the teacher
    identity, _ = compress_sam3(teacher, t_cfg)
    x, samples = one_prompt(teacher, 336)
    with torch.no_grad():
        diff = max_abs_diff(teacher._forward(x, samples), identity._forward(x, samples))
    del identity
    results['identity_max_abs_diff'] = diff
    print(f'identity compression: max |student - teacher| = {diff:.3e} (336 px, 1 prompt)',
          flush=True)
    t_size = int(teacher.backbone.img_size)
    t_cx = count_complexity(teacher, (t_size, t_size), 1)
    results['teacher'] = dict(params_m=t_cx.total_params / 1e6, image_gflops=t_cx.image_flops / 1e9,
                              prompt_gflops=t_cx.prompt_flops / 1e9, size=t_size)
    print(json.dumps(dict(teacher=results['teacher'])), flush=True)
    img = demo_image(osp.join(work, 'demo.jpg'))
    for tier in args.tiers:
        cfg_path, distill_cfg = TIERS[tier]
        out = osp.join(work, f'sam3-small-{tier.lower()}_init.pth')
        s_cfg = tool.load_model_cfg(osp.join(REPO, cfg_path), bpe)
        student, plan = compress_sam3(teacher, s_cfg.model, s_cfg.get('compress_cfg'))
        print('\n'.join(plan.summary()), flush=True)
        atomic_torch_save(dict(state_dict=student.state_dict(),
                               meta=dict(compression=plan.to_dict())), out)
        fresh = MODELS.build(s_cfg.model)
        fresh.load_state_dict(torch.load(out, weights_only=True)['state_dict'], strict=True)
        del fresh
        s_size = int(student.backbone.img_size)
        cx = count_complexity(student, (s_size, s_size), 1)
        r = dict(params_m=cx.total_params / 1e6, image_gflops=cx.image_flops / 1e9,
                 prompt_gflops=cx.prompt_flops / 1e9, size=s_size, kept=plan.summary(),
                 strict_load=True)
        demo_dir = osp.join(work, f'demo_{tier}')
        demo = subprocess.run([sys.executable, 'tools/demo.py', img, cfg_path, '--weights', out,
                               '--texts', 'square', '--out-dir', demo_dir, '--score-thr', '0.0',
                               '--cfg-options', f'model.tokenizer.bpe_path={bpe}'],
                              cwd=REPO, text=True, capture_output=True,
                              env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
        r['demo_ok'] = demo.returncode == 0 and osp.isfile(osp.join(demo_dir, 'demo.json'))
        if not r['demo_ok']:
            print(demo.stdout[-2000:], demo.stderr[-2000:])
        if not args.skip_latency:
            xt, st = one_prompt(teacher, t_size)
            xs, ss = one_prompt(student, s_size)
            times = dict(teacher=[], student=[])
            with torch.no_grad():
                for _ in range(args.runs):
                    for name, m, xx, sm in (('teacher', teacher, xt, st),
                                            ('student', student, xs, ss)):
                        t1 = time.perf_counter()
                        m._forward(xx, sm)
                        times[name].append(time.perf_counter() - t1)
            r['cpu_s'] = dict(teacher=times['teacher'], student=times['student'])
            r['cpu_ratio'] = statistics.median(times['student']) / statistics.median(
                times['teacher'])
        if not args.skip_memory:
            mem = subprocess.run(
                [sys.executable, 'tools/analysis_tools/train_memory.py', distill_cfg,
                 '--num-prompts', '2', '--bpe-path', bpe, '--cfg-options',
                 f'model.teacher_ckpt={teacher_ckpt}'], cwd=REPO, text=True, capture_output=True,
                env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            r['train_memory'] = mem.stdout.strip().splitlines()[-6:] if mem.returncode == 0 \
                else ['FAILED: ' + mem.stderr[-1500:]]
        results['tiers'][tier] = r
        del student
        print(json.dumps({tier: {k: v for k, v in r.items() if k != 'kept'}}, indent=1), flush=True)

    peak = args.orin_tflops * 1e12 * args.utilisation
    t = results['teacher']
    lines = [f"| model | input | params (M) | image-tower GFLOPs | per-prompt GFLOPs | CPU latency "
             f"ratio student / teacher | Orin Nano Super estimate, 1 prompt (ms) |",
             '| --- | --- | --- | --- | --- | --- | --- |']

    def orin_ms(r):
        return (r['image_gflops'] + r['prompt_gflops']) * 1e9 / peak * 1e3

    lines.append(f"| teacher (SAM 3) | {t['size']} | {t['params_m']:.1f} | {t['image_gflops']:.0f} | "
                 f"{t['prompt_gflops']:.1f} | 1 | {orin_ms(t):.0f} |")
    for tier, r in results['tiers'].items():
        ratio = f"{r['cpu_ratio']:.3f}" if 'cpu_ratio' in r else 'n/a'
        lines.append(f"| SAM3-Small {tier} | {r['size']} | {r['params_m']:.1f} | "
                     f"{r['image_gflops']:.0f} | {r['prompt_gflops']:.1f} | {ratio} | "
                     f"{orin_ms(r):.0f} |")
    table = '\n'.join(lines)
    print(table)
    print(f'Orin figures are estimates: FLOPs / ({args.orin_tflops:g} TFLOP/s fp16 peak x '
          f'{args.utilisation:g} assumed utilisation); not measured on a device.')
    results['table'] = table
    with open(osp.join(work, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    print(f'done in {(time.time() - t0) / 60:.1f} min')
    return results


if __name__ == '__main__':
    main()
