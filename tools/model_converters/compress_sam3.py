"""Build a compact SAM 3 student from a teacher checkpoint (SAM3-Small).

    python tools/model_converters/compress_sam3.py TEACHER_CFG TEACHER.pth STUDENT_CFG OUT.pth
    python tools/model_converters/compress_sam3.py TEACHER_CFG TEACHER.pth STUDENT_CFG OUT.pth \
        --calib-images data/coco/val2017 --rank-blocks

The student's sizes come from STUDENT_CFG's ``model`` (ViT depth / global blocks / width /
heads / MLP, text layers, geometry / fusion / decoder layers and FFN widths, queries, input
size); an optional top-level ``compress_cfg`` dict lists explicit teacher indices
(``vit_blocks``, ``text_layers``, ``geometry_layers``, ``encoder_layers``, ``decoder_layers``,
``queries``). Every student tensor is cut out of the teacher's (see
:mod:`mmsam3.compression`); the teacher checkpoint must load strictly into TEACHER_CFG.

Prints what was kept and the parameters and FLOPs (image tower at each model's input size,
per prompt) before and after; OUT holds ``state_dict`` and ``meta.compression`` (the plan,
used by the distiller to match queries by index).
"""
import argparse
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
DEFAULT_BPE = osp.join(REPO, '..', 'shared', 'data', 'bpe_simple_vocab_16e6.txt.gz')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('teacher_config')
    p.add_argument('checkpoint', help='teacher checkpoint (mmsam3 layout)')
    p.add_argument('student_config')
    p.add_argument('out', help='student checkpoint to write (.pth)')
    p.add_argument('--calib-images', metavar='DIR', help='calibration images (ranking mode)')
    p.add_argument('--num-calib', type=int, default=16, help='calibration images used')
    p.add_argument('--rank-blocks', action='store_true',
                   help='keep the windowed ViT blocks that change their input most on the '
                        'calibration images (default: evenly spaced)')
    p.add_argument('--no-flops', action='store_true', help='skip the FLOP count')
    p.add_argument('--prompts', type=int, default=1, help='prompts for the FLOP count')
    p.add_argument('--bpe-path', default=None,
                   help='CLIP BPE vocabulary when the configs\' path does not exist')
    return p.parse_args(argv)


def load_model_cfg(path, bpe_path=None):
    import mmsam3  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(path)
    bpe = cfg.model.tokenizer.get('bpe_path')
    if bpe_path or not (bpe and osp.isfile(bpe)):
        cfg.model.tokenizer.bpe_path = bpe_path or os.environ.get('MMSAM3_BPE_PATH', DEFAULT_BPE)
    return cfg


def complexity(model, prompts):
    """(image GFLOPs, per-prompt GFLOPs) at the model's own input size, or None."""
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
    from get_flops import count_complexity
    size = int(getattr(model.backbone, 'img_size', 1008))
    r = count_complexity(model, (size, size), prompts)
    return r.image_flops / 1e9, r.prompt_flops / 1e9


def format_table(teacher, student, flops):
    def params(m):
        return sum(p.numel() for p in m.parameters())

    rows = [('', 'teacher', 'student', 'ratio'),
            ('params (M)', params(teacher) / 1e6, params(student) / 1e6,
             params(student) / params(teacher)),
            ('ViT params (M)', params(teacher.backbone) / 1e6, params(student.backbone) / 1e6,
             params(student.backbone) / params(teacher.backbone))]
    if flops:
        (ti, tp), (si, sp) = flops
        rows += [('image-tower GFLOPs', ti, si, si / ti), ('per-prompt GFLOPs', tp, sp, sp / tp)]
    out = []
    for r in rows:
        out.append(f'{r[0]:<20}' + ''.join(f'{v:>14.3f}' if isinstance(v, float) else f'{v:>14}'
                                           for v in r[1:]))
    return '\n'.join(out)


def main(argv=None):
    args = parse_args(argv)
    from mmsam3.compression import CompressionError, compress_sam3, load_teacher
    from mmsam3.compression.compressor import load_calibration_images
    from mmsam3.utils.atomic_save import atomic_torch_save
    t0 = time.time()
    t_cfg = load_model_cfg(args.teacher_config, args.bpe_path)
    s_cfg = load_model_cfg(args.student_config, args.bpe_path)
    try:
        teacher = load_teacher(t_cfg.model, args.checkpoint)
        calib = None
        if args.rank_blocks and not args.calib_images:
            raise CompressionError('--rank-blocks needs --calib-images DIR')
        if args.calib_images:
            size = int(getattr(teacher.backbone, 'img_size', 1008))
            calib = load_calibration_images(args.calib_images, teacher, size, args.num_calib)
        student, plan = compress_sam3(teacher, s_cfg.model, s_cfg.get('compress_cfg'), calib,
                                      args.rank_blocks)
    except CompressionError as exc:
        sys.exit(f'compress_sam3: {exc}')
    print('kept of the teacher:')
    print('\n'.join('  ' + line for line in plan.summary()))
    flops = None if args.no_flops else (complexity(teacher, args.prompts),
                                        complexity(student, args.prompts))
    print(format_table(teacher, student, flops))
    meta = dict(compression=plan.to_dict(), teacher_config=osp.basename(args.teacher_config),
                teacher_checkpoint=osp.basename(args.checkpoint),
                student_config=osp.basename(args.student_config))
    if flops:
        meta['gflops'] = dict(teacher_image=flops[0][0], teacher_prompt=flops[0][1],
                              student_image=flops[1][0], student_prompt=flops[1][1])
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_torch_save(dict(meta=meta, state_dict=student.state_dict()), args.out)
    print(f'saved {args.out} ({time.time() - t0:.1f} s)')
    return student, plan, flops


if __name__ == '__main__':
    main()
