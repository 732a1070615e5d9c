"""Numerical parity of mmsam3's SAM3 against Meta's official implementation.

    python tools/analysis_tools/parity_official.py --size tiny --seed 0
    python tools/analysis_tools/parity_official.py --size full --seed 0 --image demo.jpg \
        --prompts "red apple" "dog"

Steps: build the official image model with random weights from ``--seed`` (``tiny`` uses the
official classes at the widths of ``configs/_base_/models/sam3_tiny.py``), save its weights in the
official checkpoint layout (``detector.*``), convert that file with our converter, load it into
our model with ``strict=True``, run both on the same normalised image and prompts, and print the
largest absolute difference of each output. Exits 1 when any difference exceeds ``--tol``
(1e-4, fp32). The prompt set always includes exemplar boxes with and without text.

Needs the test-only ``sam3`` package and the CLIP BPE vocabulary (``--bpe``).
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

import torch

from mmsam3.testing import official_sam3

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_CONFIGS = dict(tiny='configs/_base_/models/sam3_tiny.py',
                     full='configs/_base_/models/sam3_vit-l.py')

# (text, exemplar boxes as normalised cx, cy, w, h, labels); the official processor uses the
# phrase 'visual' for box-only prompts.
DEFAULT_CASES = (
    ('red apple', None, None),
    ('a dog sitting on the grass', None, None),
    ('red apple', [[0.5, 0.5, 0.3, 0.4], [0.2, 0.3, 0.1, 0.2]], [True, False]),
    ('visual', [[0.6, 0.4, 0.25, 0.3]], [True]),
)


def load_image(path, size):
    """The official processor's preprocessing: square resize, [0, 1], normalise to [-1, 1]."""
    from torchvision.io import read_image
    from torchvision.transforms import v2

    img = read_image(path)[:3]
    img = v2.Resize(size=(size, size))(img).float() / 255.0
    return ((img - 0.5) / 0.5)[None]


def build_ours(size, state_dict, bpe_path):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, MODEL_CONFIGS[size]))
    cfg.model.tokenizer.bpe_path = bpe_path
    model = MODELS.build(cfg.model)
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), cfg


def official_to_ours(official_model, workdir):
    """Write the official weights as a checkpoint file and convert it like a user would."""
    from mmsam3.utils.sam3_checkpoint import convert_official_state_dict, format_report

    from mmsam3.utils.atomic_save import atomic_torch_save

    path = osp.join(workdir, 'sam3_official_layout.pt')
    atomic_torch_save(official_sam3.official_state_dict_in_checkpoint_layout(official_model), path)
    state, report = convert_official_state_dict(torch.load(path, weights_only=True))
    if report['unknown']:
        raise RuntimeError('converter left keys unconverted:\n' + format_report(report))
    return state, report


@torch.no_grad()
def run_parity(size='tiny', seed=0, image=None, cases=DEFAULT_CASES, bpe_path=None,
               verbose=True):
    """Return ``{output name: max abs diff}`` over all prompts (and the report)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

    bpe_path = bpe_path or official_sam3.BPE_PATH
    official = official_sam3.build_official_image_model(size, seed=seed, bpe_path=bpe_path)
    with tempfile.TemporaryDirectory() as tmp:
        state, report = official_to_ours(official, tmp)
    ours, cfg = build_ours(size, state, bpe_path)
    img_size = cfg.model.backbone.img_size
    if image is None:
        gen = torch.Generator().manual_seed(seed)
        inputs = torch.rand(1, 3, img_size, img_size, generator=gen) * 2 - 1
    else:
        inputs = load_image(image, img_size)

    texts = [c[0] for c in cases]
    scale = torch.tensor([img_size] * 4, dtype=torch.float32)
    prompt_boxes = [None if c[1] is None else bbox_cxcywh_to_xyxy(torch.tensor(c[1])) * scale
                    for c in cases]
    prompt_box_labels = [None if c[2] is None else torch.tensor(c[2]).long() for c in cases]
    sample = DetDataSample(metainfo=dict(
        texts=texts, prompt_boxes=prompt_boxes, prompt_box_labels=prompt_box_labels,
        img_shape=(img_size, img_size), ori_shape=(img_size, img_size),
        batch_input_shape=(img_size, img_size), scale_factor=(1.0, 1.0)))
    # All prompts of the image in one batch (the image tower runs once).
    out = ours._forward(inputs, [sample])

    diffs = {}

    def record(name, a, b):
        d = (a.float() - b.float()).abs().max().item()
        diffs[name] = max(diffs.get(name, 0.0), d)

    for p, (text, boxes, labels) in enumerate(cases):
        ref = official_sam3.run_official(
            official, inputs, text, None if boxes is None else torch.tensor(boxes), labels)
        q = ref['pred_logits'].shape[1]
        logits = out['logits'][-1, p, :q]
        presence = out['presence'][-1, p]
        record('logits', logits, ref['pred_logits'][0])
        record('presence_logit', presence, ref['presence_logit_dec'][0])
        record('scores', logits.sigmoid() * presence.sigmoid(),
               ref['pred_logits'][0].sigmoid() * ref['presence_logit_dec'][0].sigmoid())
        record('boxes', out['boxes'][-1, p, :q], ref['pred_boxes'][0])
        if 'pred_masks' in ref:
            record('mask_logits', out['pred_masks'][p, :q], ref['pred_masks'][0])
            record('semantic_seg', out['semantic_seg'][p], ref['semantic_seg'][0])
    if verbose:
        from mmsam3.utils.sam3_checkpoint import format_report
        print(f'size={size} seed={seed} image={image or "random"} prompts={len(cases)}')
        print(format_report(report))
        for k, v in diffs.items():
            print(f'max |ours - official| {k:15s} {v:.3e}')
    return diffs, report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', choices=sorted(MODEL_CONFIGS), default='tiny')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--image', help='image file (default: a random image from the seed)')
    parser.add_argument('--prompts', nargs='+', help='text prompts (replace the default text '
                        'cases; the exemplar-box cases are always added)')
    parser.add_argument('--bpe', default=official_sam3.BPE_PATH, help='CLIP BPE vocabulary')
    parser.add_argument('--tol', type=float, default=1e-4)
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ok, reason = official_sam3.official_available()
    if not ok:
        sys.exit(reason)
    if not osp.isfile(args.bpe):
        sys.exit(f'BPE vocabulary not found: {args.bpe}')
    cases = DEFAULT_CASES
    if args.prompts:
        cases = tuple((t, None, None) for t in args.prompts) + tuple(
            c for c in DEFAULT_CASES if c[1] is not None)
    diffs, _ = run_parity(args.size, args.seed, args.image, cases, args.bpe)
    worst = max(diffs.values())
    status = 'PASS' if worst <= args.tol else 'FAIL'
    print(f'{status}: largest difference {worst:.3e} (tolerance {args.tol:g})')
    return 0 if worst <= args.tol else 1


if __name__ == '__main__':
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    sys.exit(main())
