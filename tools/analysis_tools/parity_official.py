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

End to end (``--end-to-end IMAGE``): the image *file* through Meta's ``Sam3Processor`` (its own
decode, torchvision resize and normalisation) versus through mmdet's ``DetInferencer`` with
``configs/sam3/sam3_vit-l_zeroshot_coco.py`` (our pipeline: ``LoadImageFromFile``,
``TorchvisionResize``, ``DetDataPreprocessor``), same converted weights, every query of every
phrase kept (score_thr 0). Per phrase the queries are sorted by score and compared: scores, boxes
(pixels of the original image) and the fraction of mask pixels that differ; queries whose scores
tie within the score tolerance may swap places, so boxes and masks pair each query with the
official one of (nearly) the same score closest in box. mmsam3 clips boxes to
the image as mmdet detectors do and ``Sam3Processor`` does not, so the official boxes are clipped
the same way before the comparison::

    python tools/analysis_tools/parity_official.py --size tiny --end-to-end photo.jpg \
        --prompts "red apple" "dog"

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


ZEROSHOT_CONFIG = 'configs/sam3/sam3_vit-l_zeroshot_coco.py'
END_TO_END_TOLERANCES = dict(scores=1e-4, boxes_px=0.05, mask_pixels=1e-3)


def _end_to_end_config(size, bpe_path, num_texts, img_size, num_queries,
                       resize_type='TorchvisionResize'):
    """The zero-shot config with the model of ``size`` and every query kept (``resize_type``
    'Resize' puts mmdet's cv2 resize back, to measure what the torchvision resize changes)."""
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(REPO, ZEROSHOT_CONFIG))
    if size != 'full':
        cfg.model = Config.fromfile(osp.join(REPO, MODEL_CONFIGS[size])).model
    cfg.model.tokenizer.bpe_path = bpe_path
    cfg.model.test_cfg.update(score_thr=0.0, max_per_img=num_queries * num_texts,
                              max_per_prompt=-1)
    resize = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'TorchvisionResize']
    if len(resize) != 1:
        raise RuntimeError(f'{ZEROSHOT_CONFIG} must resize with one TorchvisionResize')
    resize[0]['scale'] = (img_size, img_size)
    resize[0]['type'] = resize_type
    cfg.load_from = None
    return cfg


@torch.no_grad()
def run_end_to_end(image, size='tiny', seed=0, texts=('red apple', 'a dog sitting on the grass'),
                   bpe_path=None, verbose=True, resize_type='TorchvisionResize'):
    """An image file through ``Sam3Processor`` and through ``DetInferencer``.

    Returns:
        dict: per measure (``scores``, ``boxes_px``, ``mask_pixels``) the worst value over the
        phrases, plus ``num_queries`` compared per phrase.
    """
    from PIL import Image
    from sam3.model.sam3_image_processor import Sam3Processor

    import mmsam3  # noqa: F401
    from mmdet.apis import DetInferencer

    bpe_path = bpe_path or official_sam3.BPE_PATH
    official = official_sam3.build_official_image_model(size, seed=seed, bpe_path=bpe_path)
    sizes = official_sam3.official_sizes(size)
    img_size, num_queries = sizes['img_size'], sizes['num_queries']
    processor = Sam3Processor(official, resolution=img_size, device='cpu',
                              confidence_threshold=-1.0)
    state = processor.set_image(Image.open(image).convert('RGB'))
    # Official results first, then only one model is held at a time (the full pair needs > 11 GB).
    refs = []
    for text in texts:
        ref = processor.set_text_prompt(text, state)
        refs.append({k: ref[k].clone() for k in ('scores', 'boxes', 'masks')})
    width, height = Image.open(image).size
    with tempfile.TemporaryDirectory() as tmp:
        converted, _ = official_to_ours(official, tmp)
        weights = osp.join(tmp, 'mmsam3.pth')
        torch.save(dict(state_dict=converted), weights)
        del converted, official, processor, state
        cfg = _end_to_end_config(size, bpe_path, len(texts), img_size, num_queries,
                                 resize_type)
        inferencer = DetInferencer(model=cfg, weights=weights, device='cpu', show_progress=False)
        ours = inferencer(image, texts=' . '.join(texts), return_datasamples=True,
                          pred_score_thr=0.0, no_save_vis=True)['predictions'][0].pred_instances
    limits = torch.tensor([width, height, width, height], dtype=torch.float32)
    worst = dict(scores=0.0, boxes_px=0.0, mask_pixels=0.0)
    for label, (text, ref) in enumerate(zip(texts, refs)):
        order = ref['scores'].argsort(descending=True)
        mine = ours.labels == label
        mine_order = ours.scores[mine].argsort(descending=True)
        if int(mine.sum()) != len(order):
            raise RuntimeError(f'{text!r}: {int(mine.sum())} queries from DetInferencer, '
                               f'{len(order)} from Sam3Processor')
        scores = ours.scores[mine][mine_order]
        boxes = ours.bboxes[mine][mine_order]
        masks = ours.masks[mine][mine_order].bool()
        ref_scores = ref['scores'][order]
        ref_boxes = torch.minimum(ref['boxes'][order].clamp(min=0), limits)
        ref_masks = ref['masks'][order][:, 0]
        worst['scores'] = max(worst['scores'], (scores - ref_scores).abs().max().item())
        # Queries whose scores tie within the tolerance may swap places when sorted: each of
        # ours is paired with the official query of (nearly) equal score closest in box.
        box_gap = (boxes[:, None] - ref_boxes[None]).abs().amax(-1)
        tied = (scores[:, None] - ref_scores[None]).abs() <= END_TO_END_TOLERANCES['scores']
        box_gap = box_gap.masked_fill(~tied, float('inf'))
        pair = box_gap.argmin(1)
        worst['boxes_px'] = max(worst['boxes_px'], box_gap.min(1).values.max().item())
        worst['mask_pixels'] = max(worst['mask_pixels'],
                                   (masks != ref_masks[pair]).float().mean().item())
    worst['num_queries'] = num_queries
    if verbose:
        print(f'end to end: size={size} seed={seed} image={image} ({width}x{height}) '
              f'phrases={len(texts)} '
              f'queries per phrase={num_queries}')
        for k in ('scores', 'boxes_px', 'mask_pixels'):
            print(f'max |DetInferencer - Sam3Processor| {k:12s} {worst[k]:.3e} '
                  f'(tolerance {END_TO_END_TOLERANCES[k]:g})')
    return worst


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', choices=sorted(MODEL_CONFIGS), default='tiny')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--image', help='image file (default: a random image from the seed)')
    parser.add_argument('--prompts', nargs='+', help='text prompts (replace the default text '
                        'cases; the exemplar-box cases are always added)')
    parser.add_argument('--bpe', default=official_sam3.BPE_PATH, help='CLIP BPE vocabulary')
    parser.add_argument('--end-to-end', metavar='IMAGE',
                        help='image file through Sam3Processor vs DetInferencer (see above)')
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
    if args.end_to_end:
        texts = tuple(args.prompts or ('red apple', 'a dog sitting on the grass'))
        worst = run_end_to_end(args.end_to_end, args.size, args.seed, texts, args.bpe)
        failed = [k for k, tol in END_TO_END_TOLERANCES.items() if worst[k] > tol]
        print('FAIL: ' + ', '.join(failed) if failed else 'PASS')
        return 1 if failed else 0
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
