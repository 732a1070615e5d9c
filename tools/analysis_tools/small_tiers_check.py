"""Full-size structural check of the SAM3-Small tiers (random weights in the official layout).

    python tools/analysis_tools/small_tiers_check.py --work-dir work_dirs/small_tiers
    python tools/analysis_tools/small_tiers_check.py --skip-latency --skip-memory   # structure only

1. Meta's full image model is built with random weights (``mmsam3.testing.official_sam3``, needs
   the test-only ``sam3`` package), saved in the official checkpoint layout and converted with
   our converter: the teacher checkpoint, loaded strictly into
   ``configs/sam3/sam3_vit-l_zeroshot_coco.py``;
2. ``tools/model_converters/compress_sam3.py`` compresses it into the identity student (the
   teacher's own config: its outputs must equal the teacher's to 1e-5) and into each
   ``configs/sam3_small`` tier; each result loads with ``strict=True`` into its tier config and
   runs through ``tools/demo.py``;
3. parameters, image-tower GFLOPs (counted on the meta device: no memory) and per-prompt
   GFLOPs (``torch.utils.flop_counter`` as in ``get_flops.py``), CPU latency of
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

TEACHER_CFG = 'configs/sam3/sam3_vit-l_zeroshot_coco.py'
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
    p.add_argument('--skip-identity', action='store_true',
                   help='skip the identity reproduction (it holds a second full model)')
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


def image_flops(model, size):
    """Image-tower FLOPs counted on the meta device (shapes only: no memory, no compute).

    ``model`` is moved to ``meta`` (its weights are gone afterwards)."""
    from get_flops import _count
    model.to('meta')
    x = torch.empty(1, 3, size, size, device='meta')
    return _count(lambda: model.extract_feat(x), model)[0]


def prompt_flops(model, size):
    """FLOPs of one text prompt after the image tower (text tower, geometry / fusion encoder,
    decoder, heads) on random neck features of a ``size`` input."""
    from get_flops import _count
    g = size // 14
    c = model.decoder.query_embed.weight.shape[1]
    feats = tuple(torch.randn(1, c, g * k, g * k) for k in (4, 2, 1))

    def fn():
        txt, mask = model.encode_texts(['object number 0'])
        model.forward_prompt_feats(feats, torch.zeros(1, dtype=torch.long), txt, mask,
                                   torch.zeros(1, 0, 4), torch.zeros(1, 0, dtype=torch.long),
                                   torch.zeros(1, 0, dtype=torch.bool))
    return _count(fn, model)[0]


def params_m(model):
    return sum(p.numel() for p in model.parameters()) / 1e6


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import compress_sam3 as tool
    from mmdet.registry import MODELS

    from mmsam3.compression import compress_sam3, load_teacher
    from mmsam3.utils.atomic_save import atomic_torch_save
    work = osp.join(REPO, args.work_dir)
    os.makedirs(work, exist_ok=True)
    bpe = args.bpe_path or tool.DEFAULT_BPE
    t0 = time.time()
    results = dict(tiers={})

    def save():
        with open(osp.join(work, 'results.json'), 'w') as f:
            json.dump(results, f, indent=1, default=str)

    teacher_ckpt = teacher_checkpoint(work, args.seed, bpe)
    print(f'teacher checkpoint (random official weights, converted): {teacher_ckpt}', flush=True)
    t_cfg = tool.load_model_cfg(osp.join(REPO, TEACHER_CFG), bpe).model
    teacher = load_teacher(t_cfg, teacher_ckpt)
    if not args.skip_identity:
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
    results['teacher'] = dict(params_m=params_m(teacher), size=t_size,
                              prompt_gflops=prompt_flops(teacher, t_size) / 1e9)
    save()
    img = demo_image(osp.join(work, 'demo.jpg'))
    students = {}
    for tier in args.tiers:
        cfg_path, distill_cfg = TIERS[tier]
        out = osp.join(work, f'sam3-small-{tier.lower()}_init.pth')
        s_cfg = tool.load_model_cfg(osp.join(REPO, cfg_path), bpe)
        student, plan = compress_sam3(teacher, s_cfg.model, s_cfg.get('compress_cfg'))
        print('\n'.join(plan.summary()), flush=True)
        atomic_torch_save(dict(state_dict=student.state_dict(),
                               meta=dict(compression=plan.to_dict())), out)
        s_size = int(student.backbone.img_size)
        r = dict(params_m=params_m(student), size=s_size, kept=plan.summary())
        if args.skip_latency:
            del student  # keep memory low: only one full-size model besides the teacher
            student = None
        fresh = MODELS.build(s_cfg.model)
        fresh.load_state_dict(torch.load(out, weights_only=True)['state_dict'], strict=True)
        r.update(strict_load=True, prompt_gflops=prompt_flops(fresh, s_size) / 1e9,
                 image_gflops=image_flops(fresh, s_size) / 1e9)
        del fresh
        demo_dir = osp.join(work, f'demo_{tier}')
        demo = subprocess.run([sys.executable, 'tools/demo.py', img, cfg_path, '--weights', out,
                               '--texts', 'square', '--out-dir', demo_dir, '--score-thr', '0.0',
                               '--cfg-options', f'model.tokenizer.bpe_path={bpe}'],
                              cwd=REPO, text=True, capture_output=True,
                              env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
        r['demo_ok'] = demo.returncode == 0 and osp.isfile(osp.join(demo_dir, 'demo.json'))
        if not r['demo_ok']:
            print(demo.stdout[-2000:], demo.stderr[-2000:])
        results['tiers'][tier] = r
        if student is not None:
            students[tier] = student
        save()
        print(json.dumps({tier: {k: v for k, v in r.items() if k != 'kept'}}, indent=1),
              flush=True)
    if not args.skip_latency:
        # one image + one prompt, teacher and students alternating in this process
        xt, st = one_prompt(teacher, t_size)
        times = {name: [] for name in ['teacher'] + list(students)}
        with torch.no_grad():
            for _ in range(args.runs):
                for name in times:
                    m = teacher if name == 'teacher' else students[name]
                    size = t_size if name == 'teacher' else results['tiers'][name]['size']
                    xx, sm = (xt, st) if name == 'teacher' else one_prompt(m, size)
                    t1 = time.perf_counter()
                    m._forward(xx, sm)
                    times[name].append(time.perf_counter() - t1)
                    print(f'latency {name}: {times[name][-1]:.2f} s', flush=True)
        results['cpu_s'] = times
        for tier in students:
            results['tiers'][tier]['cpu_ratio'] = statistics.median(
                times[tier]) / statistics.median(times['teacher'])
        save()
    students.clear()
    results['teacher']['image_gflops'] = image_flops(teacher, t_size) / 1e9
    del teacher
    save()
    if not args.skip_memory:
        for tier in args.tiers:
            mem = subprocess.run(
                [sys.executable, 'tools/analysis_tools/train_memory.py', TIERS[tier][1],
                 '--measure', '--num-prompts', '2', '--bpe-path', bpe, '--cfg-options',
                 f'model.teacher_ckpt={teacher_ckpt}'], cwd=REPO, text=True,
                capture_output=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            results['tiers'][tier]['train_memory'] = (
                mem.stdout.strip().splitlines()[-6:] if mem.returncode == 0 else
                ['FAILED: ' + mem.stderr[-1500:]])
            print(tier, results['tiers'][tier]['train_memory'], flush=True)
            save()

    peak = args.orin_tflops * 1e12 * args.utilisation
    t = results['teacher']

    def orin_ms(r):
        return (r['image_gflops'] + r['prompt_gflops']) * 1e9 / peak * 1e3

    lines = ['| model | input | params (M) | image-tower GFLOPs | per-prompt GFLOPs | CPU latency '
             'ratio student / teacher | Orin Nano Super estimate, 1 prompt (ms) |',
             '| --- | --- | --- | --- | --- | --- | --- |',
             f"| teacher (SAM 3) | {t['size']} | {t['params_m']:.1f} | {t['image_gflops']:.0f} | "
             f"{t['prompt_gflops']:.1f} | 1 | {orin_ms(t):.0f} |"]
    for tier, r in results['tiers'].items():
        ratio = f"{r['cpu_ratio']:.3f}" if 'cpu_ratio' in r else 'n/a'
        lines.append(f"| SAM3-Small {tier} | {r['size']} | {r['params_m']:.1f} | "
                     f"{r['image_gflops']:.0f} | {r['prompt_gflops']:.1f} | {ratio} | "
                     f"{orin_ms(r):.0f} |")
    results['table'] = '\n'.join(lines)
    print(results['table'])
    print(f'Orin figures are estimates: FLOPs / ({args.orin_tflops:g} TFLOP/s fp16 peak x '
          f'{args.utilisation:g} assumed utilisation); not measured on a device.')
    save()
    print(f'done in {(time.time() - t0) / 60:.1f} min')
    return results


if __name__ == '__main__':
    main()
