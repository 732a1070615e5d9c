"""How much of a teacher a compressed, distilled SAM 3 student keeps, at equal training time.

    python tools/analysis_tools/retention_check.py                      # defaults below
    python tools/analysis_tools/retention_check.py --teacher-iters 300 --budget 60   # quick run

Steps (all through the real tools, ``--threads`` CPU threads each):
1. the shapes dataset (``tools/dataset_converters/make_shapes_dataset.py``, as the learning
   check makes it; an existing one is reused);
2. the teacher, ``configs/sam3_small/retention/sam3-tiny8_168_shapes.py`` (8 ViT blocks, 168 px),
   trained from scratch for ``--teacher-iters`` iterations (skipped with ``--teacher-ckpt``);
3. ``tools/model_converters/compress_sam3.py`` cuts the student (4 blocks, 126 px, under half
   the teacher's image-tower FLOPs) out of it;
4. student runs of ``--budget`` seconds of training each (``WallTimeBudgetHook``; or exactly
   ``--student-iters`` iterations each, to compare per iteration): distilled from the compressed
   init, ground truth only from the same init, ground truth only from scratch, and with
   ``--unlabeled-root`` a fourth, distilled on the labelled images plus that root's ``train/``
   images without their annotations (teacher outputs only); ``--students`` picks a subset and
   ``--distill-options`` changes the distilled students' config (loss weights, matching, ...);
5. ``tools/test.py`` evaluates the teacher and every student on the same validation images
   (mmdet ``CocoMetric``), and one table is printed (and written to ``results.json``).

Targets: the distilled student keeps >= ``--min-retention`` (0.9) of the teacher's bbox AP50 and
reaches >= ``--min-gain`` (2) times the from-scratch student's.

The check refuses to judge (exit 2, saying why) where its ratios would be noise: a teacher below
``--teacher-floor`` bbox AP50 (0.3), or a student that trained fewer than
``--min-student-iters`` iterations in its budget. Every AP50 and both ratios come with a 90 %
interval from ``--bootstrap`` resamplings of the validation images (the same resampled sets for
every model, :mod:`mmsam3.evaluation.functional.bootstrap_ap`). Exit 0 on PASS (or where no
verdict was asked for, ``--students`` without distilled and scratch), 1 on FAIL.
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join('configs', 'sam3_small', 'retention')
TEACHER_CFG = osp.join(CFG_DIR, 'sam3-tiny8_168_shapes.py')
STUDENT_CFG = osp.join(CFG_DIR, 'sam3-tiny4_126_shapes.py')
DISTILL_CFG = osp.join(CFG_DIR, 'sam3-tiny4_126_shapes_distill.py')
DEFAULT_BPE = osp.join('..', 'shared', 'data', 'bpe_simple_vocab_16e6.txt.gz')
STUDENTS = ('distilled', 'gt_only', 'scratch', 'unlabeled')
INITS = dict(distilled='compressed teacher + KD', gt_only='compressed teacher, GT only',
             scratch='from scratch, GT only', unlabeled='compressed + KD, + unlabeled')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data-root', default=osp.join('data', 'shapes'))
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'retention_check'))
    p.add_argument('--train-images', type=int, default=800)
    p.add_argument('--val-images', type=int, default=40)
    p.add_argument('--teacher-iters', type=int, default=3000)
    p.add_argument('--teacher-ckpt', '--teacher-checkpoint', dest='teacher_ckpt',
                   help='reuse a trained teacher (skips step 2)')
    p.add_argument('--students', nargs='+', choices=STUDENTS, default=None,
                   help='student runs to do (default: distilled gt_only scratch, plus unlabeled '
                        'with --unlabeled-root); the PASS / FAIL verdict needs distilled and '
                        'scratch')
    p.add_argument('--student-iters', type=int, default=None,
                   help='train every student exactly this many iterations (the budget still '
                        'caps its time): a per-iteration comparison')
    p.add_argument('--distill-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='config overrides of the distilled students, e.g. '
                        'model.distill_loss.feat_mse_weight=0 model.match=hungarian')
    p.add_argument('--unlabeled-root', default=None,
                   help='Roboflow-layout folder whose train/ images the unlabeled student also '
                        'sees, annotations dropped (same categories as --data-root)')
    p.add_argument('--budget', type=float, default=400, help='seconds of training per student')
    p.add_argument('--clock', choices=('wall', 'process'), default='process',
                   help='what the budget counts: elapsed time, or CPU time of the training '
                        'process (equal compute on a machine shared with other jobs)')
    p.add_argument('--student-lr', type=float, default=1e-4,
                   help='lr of the students initialised from the teacher')
    p.add_argument('--scratch-lr', type=float, default=3e-4,
                   help='lr of the student from scratch (the learning check\'s)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--reuse-students', action='store_true',
                   help='reuse a student run that finished in this work dir with the same '
                        'config (its <name>_run.json), e.g. after adding a student')
    p.add_argument('--jobs', type=int, default=1,
                   help='student runs at the same time (with --clock process each still gets '
                        'its budget of its own CPU time)')
    p.add_argument('--bpe', default=os.environ.get('MMSAM3_BPE_PATH', DEFAULT_BPE))
    p.add_argument('--min-retention', type=float, default=0.9)
    p.add_argument('--min-gain', type=float, default=2.0)
    p.add_argument('--teacher-floor', type=float, default=0.3,
                   help='below this teacher bbox AP50 the check refuses to judge (exit 2)')
    p.add_argument('--min-student-iters', type=int, default=50,
                   help='a student that trains fewer iterations in its budget makes the check '
                        'refuse to judge (exit 2)')
    p.add_argument('--bootstrap', type=int, default=1000,
                   help='resamplings of the validation images for the 90%% intervals')
    return p.parse_args(argv)


class RefusedToJudge(SystemExit):
    """The check's inputs cannot support a verdict; exit code 2 with the reason."""

    def __init__(self, reason):
        print(f'REFUSED: {reason}', flush=True)
        super().__init__(2)
        self.reason = reason


def split_images(data_root, split):
    """Number of images of a split of a Roboflow-layout root, or None where it is missing."""
    path = osp.join(REPO, data_root, split, '_annotations.coco.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return len(json.load(f).get('images', []))


def check_teacher_checkpoint(ckpt, bpe):
    """Refuse a teacher checkpoint whose tensors do not fit the teacher config (another size)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsam3  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS
    from mmsam3.utils.compat import safe_torch_load

    if not osp.isfile(ckpt):
        sys.exit(f'teacher checkpoint {ckpt} not found')
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, TEACHER_CFG))
    cfg.model.tokenizer.bpe_path = bpe
    expected = {k: tuple(v.shape) for k, v in MODELS.build(cfg.model).state_dict().items()}
    state = safe_torch_load(ckpt, map_location='cpu')
    state = state.get('state_dict', state)
    wrong = [f'{k}: {tuple(v.shape)} (teacher config: {expected[k]})'
             for k, v in state.items() if k in expected and tuple(v.shape) != expected[k]]
    missing = [k for k in expected if k not in state]
    if wrong or missing:
        sys.exit(f'teacher checkpoint {ckpt} does not fit {TEACHER_CFG} (another model size?): '
                 + '; '.join(wrong[:5] + [f'missing {k}' for k in missing[:5]])
                 + (' ...' if len(wrong) + len(missing) > 10 else ''))


def run(cmd, env, log=None):
    return run_timed(cmd, env, log)[0]


def run_timed(cmd, env, log=None):
    """Run a command; its output (also written to ``log``) and the CPU seconds (user + system)
    of it and its children, measured per process (``os.wait4``), so parallel runs each get
    their own."""
    import tempfile
    print('+', ' '.join(cmd), flush=True)
    with (open(log, 'w+') if log else tempfile.TemporaryFile('w+')) as f:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, text=True, stdout=f,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        f.seek(0)
        out = f.read()
    if proc.returncode:
        print(out[-4000:])
        raise SystemExit(f'command failed ({proc.returncode}): {" ".join(cmd)}')
    return out, usage.ru_utime + usage.ru_stime


def data_options(root, bpe):
    root = root.rstrip('/') + '/'
    ann = root + 'valid/_annotations.coco.json'
    return [f'data_root={root}', f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'val_evaluator.0.ann_file={ann}',
            f'val_evaluator.1.ann_file={ann}', f'test_evaluator.0.ann_file={ann}',
            f'test_evaluator.1.ann_file={ann}', f'model.tokenizer.bpe_path={bpe}']


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def evaluate(cfg, ckpt, options, env, log, preds_prefix):
    """COCO AP of one model; its COCO-format detections go to ``preds_prefix.bbox.json``."""
    out = run([sys.executable, 'tools/test.py', cfg, ckpt, '--cfg-options'] + options
              + [f'test_evaluator.0.outfile_prefix={preds_prefix}'], env, log)
    metrics = {}
    for key in ('coco/bbox_mAP_50', 'coco/bbox_mAP', 'coco/segm_mAP_50', 'coco/segm_mAP'):
        found = re.findall(re.escape(key) + r':\s*([-0-9.]+)', out)
        metrics[key] = float(found[-1]) if found else float('nan')
    return metrics


def student_config(name, base_cfg, args, init=None, lr=1e-4, teacher_ckpt=None,
                   unlabeled_ann=None):
    """A config file (in the work dir) for one wall-time-limited student run."""
    iters = args.student_iters or 1000000
    lines = [
        f'_base_ = [{osp.join(REPO, base_cfg)!r}]',
        f'load_from = {init!r}',
        f'optim_wrapper = dict(optimizer=dict(lr={lr!r}))',
        f'train_cfg = dict(max_iters={iters}, val_interval=1000000)',
        f'default_hooks = dict(checkpoint=dict(interval={iters}, save_last=True, '
        'save_best=None))',
        '# warm-up, then a constant lr: a run stopped by the clock is not mid-schedule',
        "param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, "
        'end=50)]',
        "custom_hooks = [dict(type='TrainingHealthHook', max_consecutive_bad=5, "
        "on_repeated='rollback'),",
        f"                dict(type='WallTimeBudgetHook', seconds={args.budget!r}, "
        f"clock={args.clock!r})]",
    ]
    if teacher_ckpt:
        lines.append(f'model = dict(teacher_ckpt={teacher_ckpt!r})')
    if unlabeled_ann:
        lines += unlabeled_lines(args, unlabeled_ann)
    path = osp.join(args.work_dir, f'{name}_config.py')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def unlabeled_lines(args, ann_file):
    """Config lines: the labelled training set concatenated with images without annotations
    (``MarkUnlabeled``, every category prompted; the distiller gives them teacher terms only)."""
    labelled = osp.join(REPO, args.data_root).rstrip('/') + '/'
    root = osp.join(REPO, args.unlabeled_root).rstrip('/') + '/'
    return [
        'unlabeled_pipeline = [',
        "    dict(type='LoadImageFromFile'),",
        '    # no annotations: empty boxes and masks, so a batch mixing both sets pads alike',
        "    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),",
        "    dict(type='RandomChoiceResize', scales={{_base_.train_scales}}, keep_ratio=False),",
        "    dict(type='RandomOffsetPad', size={{_base_.input_size}}),",
        "    dict(type='MarkUnlabeled'),",
        "    dict(type='BuildPromptQueries', prompt_all_classes=True),",
        "    dict(type='PackSAM3Inputs'),",
        ']',
        "train_dataloader = dict(dataset=dict(_delete_=True, type='ConcatDataset', datasets=[",
        f"    dict(type='SAM3PromptCocoDataset', data_root={labelled!r}, split='train',",
        '         num_negative_prompts=-1, filter_cfg=dict(filter_empty_gt=False),',
        '         pipeline={{_base_.train_pipeline}}),',
        f"    dict(type='SAM3PromptCocoDataset', data_root={root!r}, ann_file={ann_file!r},",
        "         data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=False),",
        '         pipeline=unlabeled_pipeline)]))',
    ]


def unlabeled_annotations(unlabeled_root, labelled_root):
    """The unlabeled root's ``train/`` images and categories, annotations dropped (a COCO dict);
    its categories must be the labelled data's."""
    src = osp.join(REPO, unlabeled_root, 'train', '_annotations.coco.json')
    if not osp.isfile(src):
        sys.exit(f'--unlabeled-root {unlabeled_root} has no train/_annotations.coco.json '
                 '(Roboflow layout: the images and categories; annotations are dropped)')
    with open(src) as f:
        coco = json.load(f)
    with open(osp.join(REPO, labelled_root, 'train', '_annotations.coco.json')) as f:
        cats = json.load(f)['categories']
    names = lambda cs: sorted((c['id'], c['name']) for c in cs)  # noqa: E731
    if names(coco['categories']) != names(cats):
        sys.exit(f'--unlabeled-root {unlabeled_root} has other categories than {labelled_root} '
                 f'({names(coco["categories"])} vs {names(cats)}): its images are prompted with '
                 'the labelled data\'s category names; generate them with the same preset')
    if not coco.get('images'):
        sys.exit(f'--unlabeled-root {unlabeled_root} lists no train/ images')
    return dict(images=coco['images'], annotations=[], categories=coco['categories'])


def student_run(name, cfg, args, env, options):
    work = osp.join(args.work_dir, name)
    record = osp.join(args.work_dir, f'{name}_run.json')
    if args.reuse_students and osp.isfile(record):
        with open(record) as f:
            done = json.load(f)
        if done['config'] == open(cfg).read() and osp.isfile(done['checkpoint']):
            print(f'[retention] reusing the finished {name} run ({record})', flush=True)
            return done['checkpoint'], done['iters'], done['wall_s'], done['cpu_s']
        print(f'[retention] {record} was made with another config: training {name} again',
              flush=True)
    t0 = time.time()
    extra = args.distill_options if name in ('distilled', 'unlabeled') else []
    if name == 'unlabeled':  # its config names both datasets' roots
        options = [o for o in options if not o.startswith('train_dataloader.dataset.')]
    _, cpu = run_timed([sys.executable, 'tools/train.py', cfg, '--work-dir', work,
                        '--cfg-options'] + options + extra, env,
                       osp.join(args.work_dir, f'{name}_train.log'))
    if not osp.isfile(osp.join(work, 'last_checkpoint')):
        raise RefusedToJudge(f'the {name} student saved no checkpoint within its budget of '
                             f'{args.budget:g} s; raise --budget')
    ckpt = last_checkpoint(work)
    iters = int(re.findall(r'iter_(\d+)\.pth', ckpt)[-1])
    if iters < args.min_student_iters:
        raise RefusedToJudge(
            f'the {name} student trained only {iters} iterations in its budget of {args.budget:g} '
            f's (< --min-student-iters {args.min_student_iters}): its AP says nothing yet; '
            'raise --budget')
    wall = time.time() - t0
    with open(record, 'w') as f:
        json.dump(dict(config=open(cfg).read(), checkpoint=ckpt, iters=iters, wall_s=wall,
                       cpu_s=cpu), f)
    return ckpt, iters, wall, cpu


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(osp.join(REPO, args.work_dir), exist_ok=True)
    args.work_dir = osp.join(REPO, args.work_dir)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    py = sys.executable
    start = time.time()
    if not osp.isfile(osp.join(REPO, args.bpe)) and not osp.isfile(args.bpe):
        sys.exit(f'CLIP BPE vocabulary not found at {args.bpe} (use --bpe)')
    root = osp.join(REPO, args.data_root)
    if not osp.isdir(root) or not os.listdir(root):
        run([py, 'tools/dataset_converters/make_shapes_dataset.py', args.data_root, '--train',
             str(args.train_images), '--val', str(args.val_images), '--seed', '0', '--size',
             '168', '--radius', '0.15', '0.25',
             '--preset', 'distinct'], env)
    num_val, num_train = split_images(args.data_root, 'valid'), split_images(args.data_root,
                                                                             'train')
    if not num_val:
        sys.exit(f'{args.data_root} has no validation split (valid/_annotations.coco.json with '
                 'images): the check evaluates every model on it. Point --data-root at a '
                 'Roboflow-layout folder with train/ and valid/, or at an empty or new folder '
                 'to generate the shapes data there')
    if not num_train:
        sys.exit(f'{args.data_root} has no training split (train/_annotations.coco.json)')
    print(f'[retention] data {args.data_root}: {num_train} training and {num_val} validation '
          'images', flush=True)
    if args.budget <= 0:
        sys.exit(f'--budget must be positive (got {args.budget:g})')
    if args.student_iters is not None and args.student_iters < 1:
        sys.exit(f'--student-iters must be positive (got {args.student_iters})')
    students = args.students or (['distilled', 'gt_only', 'scratch']
                                 + (['unlabeled'] if args.unlabeled_root else []))
    unlabeled_coco = None
    if 'unlabeled' in students:
        if not args.unlabeled_root:
            sys.exit('the unlabeled student needs --unlabeled-root (a folder whose train/ '
                     'images it sees without annotations)')
        unlabeled_coco = unlabeled_annotations(args.unlabeled_root, args.data_root)
        print(f'[retention] unlabeled student: + {len(unlabeled_coco["images"])} images of '
              f'{args.unlabeled_root}/train without annotations', flush=True)
    options = data_options(args.data_root, args.bpe)
    preds = lambda name: osp.join(args.work_dir, f'{name}_preds')  # noqa: E731

    # 2. teacher, evaluated first: below the floor no ratio means anything
    if args.teacher_ckpt:
        check_teacher_checkpoint(args.teacher_ckpt, args.bpe)
        teacher_ckpt, teacher_time = args.teacher_ckpt, 0.0
    else:
        n = args.teacher_iters
        t0 = time.time()
        work = osp.join(args.work_dir, 'teacher')
        run([py, 'tools/train.py', TEACHER_CFG, '--work-dir', work, '--cfg-options'] + options + [
            f'train_cfg.max_iters={n}', f'train_cfg.val_interval={n}',
            f'default_hooks.checkpoint.interval={n}', f'param_scheduler.1.begin={n // 2}',
            f'param_scheduler.1.end={n}', f'param_scheduler.1.T_max={n - n // 2}'
        ], env, osp.join(args.work_dir, 'teacher_train.log'))
        teacher_ckpt, teacher_time = last_checkpoint(work), time.time() - t0
    results = dict(teacher=dict(
        init='from scratch', iters=args.teacher_iters if not args.teacher_ckpt else None,
        train_s=teacher_time, **evaluate(TEACHER_CFG, teacher_ckpt, options, env,
                                         osp.join(args.work_dir, 'teacher_test.log'),
                                         preds('teacher'))))
    t_ap50 = results['teacher']['coco/bbox_mAP_50']
    print(f'[retention] teacher bbox AP50 {t_ap50:.3f} on the {num_val} validation images '
          f'(floor {args.teacher_floor:g}; '
          + (f'reused {teacher_ckpt})' if args.teacher_ckpt else
             f'trained {teacher_time / 60:.1f} min)'), flush=True)
    if not t_ap50 >= args.teacher_floor:
        raise RefusedToJudge(
            f'the teacher reaches bbox AP50 {t_ap50:.3f}, below the floor {args.teacher_floor:g}: '
            'ratios against a teacher that learned this little are noise. Train it longer '
            '(--teacher-iters), give a better one (--teacher-ckpt), or use easier data')

    # 3. compress
    init = osp.join(args.work_dir, 'student_init.pth')
    report = run([py, 'tools/model_converters/compress_sam3.py', TEACHER_CFG, teacher_ckpt,
                  STUDENT_CFG, init, '--prompts', '4', '--bpe-path', args.bpe], env,
                 osp.join(args.work_dir, 'compress.log'))
    print(report)
    gflops = {}
    for line in report.splitlines():
        if line.startswith('image-tower GFLOPs') or line.startswith('per-prompt GFLOPs'):
            vals = [float(x) for x in line.split()[2:]]
            gflops[line.split()[0]] = vals

    # 4. students, same time each
    unlabeled_ann = None
    if unlabeled_coco is not None:
        unlabeled_ann = osp.join(args.work_dir, 'unlabeled_images.json')
        with open(unlabeled_ann, 'w') as f:
            json.dump(unlabeled_coco, f)
    make = dict(
        distilled=lambda: student_config('distilled', DISTILL_CFG, args, init, args.student_lr,
                                         teacher_ckpt),
        gt_only=lambda: student_config('gt_only', STUDENT_CFG, args, init, args.student_lr),
        scratch=lambda: student_config('scratch', STUDENT_CFG, args, None, args.scratch_lr),
        unlabeled=lambda: student_config('unlabeled', DISTILL_CFG, args, init, args.student_lr,
                                         teacher_ckpt, unlabeled_ann))
    cfgs = {name: make[name]() for name in STUDENTS if name in students}
    if args.jobs > 1:  # budgets count each process's own CPU time, so parallel runs are fair
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {name: pool.submit(student_run, name, cfg, args, env, options)
                       for name, cfg in cfgs.items()}
            runs = {name: future.result() for name, future in futures.items()}
    else:
        runs = {name: student_run(name, cfg, args, env, options) for name, cfg in cfgs.items()}

    # 5. evaluation, same validation images and metric
    for name, (ckpt, iters, wall, cpu) in runs.items():
        metrics = evaluate(cfgs[name], ckpt, options, env,
                           osp.join(args.work_dir, f'{name}_test.log'), preds(name))
        results[name] = dict(init=INITS[name], iters=iters, train_s=wall, cpu_s=cpu, **metrics)

    spread = bootstrap_spread(args, results, preds)
    judged = 'distilled' in results and 'scratch' in results
    retention = gain = float('nan')
    if judged:
        d_ap50 = results['distilled']['coco/bbox_mAP_50']
        s_ap50 = results['scratch']['coco/bbox_mAP_50']
        retention = d_ap50 / t_ap50 if t_ap50 > 0 else float('nan')
        gain = d_ap50 / s_ap50 if s_ap50 > 0 else float('inf')
    per = (f'{args.student_iters} iterations (at most {args.budget:g} s {args.clock} time)'
           if args.student_iters else f'{args.budget:g} s {args.clock} time')
    print(f'\n=== retention check (the same {num_val} validation images of {args.data_root}, '
          f'mmdet CocoMetric; {per} per student; 90 % intervals from {args.bootstrap} '
          'resamplings of those images) ===')
    if args.distill_options:
        print('distilled students\' config overrides: ' + ' '.join(args.distill_options))
    if gflops:
        print('image-tower GFLOPs teacher {:.3f} / student {:.3f} (ratio {:.3f}); per prompt '
              '{:.3f} / {:.3f}'.format(*gflops['image-tower'], *gflops.get('per-prompt',
                                                                          [0, 0, 0])[:2]))
    print(f"{'model':<11}{'init / training':<32}{'iters':>7}{'wall s':>8}{'CPU s':>8}"
          f"{'bbox AP50':>11}{'90% interval':>16}{'bbox AP':>9}{'segm AP50':>11}"
          f"{'AP50 / teacher':>16}")
    for name, r in results.items():
        lo, hi = spread['ap50'][name]
        cpu = f"{r['cpu_s']:.0f}" if r.get('cpu_s') is not None else '-'
        print(f"{name:<11}{r['init']:<32}{str(r['iters']):>7}{r['train_s']:>8.0f}{cpu:>8}"
              f"{r['coco/bbox_mAP_50']:>11.3f}{f'[{lo:.3f}, {hi:.3f}]':>16}"
              f"{r['coco/bbox_mAP']:>9.3f}{r['coco/segm_mAP_50']:>11.3f}"
              f"{r['coco/bbox_mAP_50'] / max(t_ap50, 1e-9):>16.3f}")
    ok = None
    if judged:
        ok = retention >= args.min_retention and gain >= args.min_gain
        verdict = 'PASS' if ok else 'FAIL'
        (r_lo, r_hi), (g_lo, g_hi) = spread['retention'], spread['gain']
        print(f'{verdict}: distilled keeps {retention:.3f} [{r_lo:.3f}, {r_hi:.3f}] of the '
              f'teacher\'s bbox AP50 (target >= {args.min_retention}) and has {gain:.2f}x '
              f'[{g_lo:.2f}, {g_hi:.2f}] the from-scratch student\'s (target >= '
              f'{args.min_gain}); wall time {(time.time() - start) / 60:.1f} min')
    else:
        print('no verdict (it needs the distilled and the scratch students); wall time '
              f'{(time.time() - start) / 60:.1f} min')
    summary = dict(results=results, gflops=gflops, retention=retention, gain=gain,
                   passed=ok, budget_s=args.budget, teacher_ckpt=teacher_ckpt,
                   student_iters=args.student_iters, distill_options=args.distill_options,
                   unlabeled_root=args.unlabeled_root,
                   num_val_images=num_val, num_train_images=num_train, spread=spread)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


def bootstrap_spread(args, results, preds):
    """90 % intervals of every AP50 and of the two ratios, over resampled validation images."""
    import numpy as np

    from mmsam3.evaluation.functional.bootstrap_ap import (bootstrap_aps, image_records,
                                                           interval)
    with open(osp.join(REPO, args.data_root, 'valid', '_annotations.coco.json')) as f:
        gt = json.load(f)
    records = {}
    for name in results:
        with open(preds(name) + '.bbox.json') as f:
            records[name] = image_records(gt, json.load(f))
    aps = bootstrap_aps(records, num_samples=args.bootstrap, seed=0)
    spread = dict(ap50={name: interval(v) for name, v in aps.items()})
    if 'distilled' in aps and 'scratch' in aps:
        with np.errstate(divide='ignore', invalid='ignore'):
            spread['retention'] = interval(aps['distilled'] / aps['teacher'])
            spread['gain'] = interval(aps['distilled'] / aps['scratch'])
    return spread


if __name__ == '__main__':
    summary = main()
    sys.exit(1 if summary['passed'] is False else 0)
