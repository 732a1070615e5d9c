"""Interactive segmentation parity: Meta's ``Sam3Image.predict_inst`` against mmsam3, same weights,
same image file.

    python tools/analysis_tools/parity_interactive.py IMAGE [--size tiny|full] [--seed 0]

Meta's image model with ``enable_inst_interactivity`` is built with random weights (``tiny``:
Meta's classes at the widths of ``configs/_base_/models/sam3_tiny_interactive.py``), saved in the
``sam3.pt`` layout and converted with mmsam3's converter. Meta's side reads the file through
``Sam3Processor.set_image`` and answers with ``predict_inst``; mmsam3's side reads it through
``SAM3Predictor.set_image`` and answers with ``SAM3Predictor.predict``. Cases: one positive
click, positive + negative clicks, a box, a box + clicks, a mask prompt from the previous round
(+ a click), each with multimask output on and off. Compared: the low-resolution logits
(clamped to +-32 as Meta returns them), the IoU predictions and the final masks at the image's
size (fraction of differing pixels). Meta's post-processing fills small holes only where its
connected-components kernel runs (CUDA, or scikit-image on the CPU); without them it warns and
skips the step, and mmsam3 is run the same way (``max_hole_area`` 0).
"""
import argparse
import os.path as osp
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmsam3.testing import official_sam3  # noqa: E402

TOLERANCES = dict(low_res_logits=1e-4, iou=1e-4, mask_pixels=1e-3)


def cases_for(width, height):
    """``(name, kwargs)`` prompts in original-image pixels (``mask_input`` filled later)."""
    w, h = float(width), float(height)
    pos = [[0.45 * w, 0.5 * h]]
    box = [0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h]
    out = []
    for multi in (True, False):
        tag = 'multi' if multi else 'single'
        cases = [
            (f'one positive click/{tag}', dict(point_coords=pos, point_labels=[1])),
            (f'positive + negative clicks/{tag}',
             dict(point_coords=pos + [[0.8 * w, 0.2 * h], [0.3 * w, 0.6 * h]],
                  point_labels=[1, 0, 1])),
            (f'box/{tag}', dict(box=box)),
            (f'box + clicks/{tag}', dict(box=box, point_coords=[[0.5 * w, 0.6 * h],
                                                                 [0.25 * w, 0.3 * h]],
                                         point_labels=[1, 0])),
            (f'mask prompt from the previous round + click/{tag}',
             dict(point_coords=pos + [[0.6 * w, 0.7 * h]], point_labels=[1, 0],
                  mask_input='previous')),
        ]
        out += [(n, dict(kw, multimask_output=multi)) for n, kw in cases]
    return out


def build_pair(size, seed, workdir, bpe_path=None):
    """Meta's interactive image model and the path of the same weights in mmsam3's layout."""
    from mmsam3.utils.atomic_save import atomic_torch_save
    from mmsam3.utils.sam3_checkpoint import convert_official_state_dict, format_report

    bpe_path = bpe_path or official_sam3.BPE_PATH
    official = official_sam3.build_official_image_model(size, seed=seed, bpe_path=bpe_path,
                                                        enable_inst_interactivity=True)
    # Well-scaled random weights for the click head and the tracker neck (Meta's initial
    # values make near-constant masks): differences show.
    from mmsam3.testing.random_weights import randomize_parameters
    tracker = official.inst_interactive_predictor.model
    randomize_parameters(tracker.sam_prompt_encoder, seed + 1)
    randomize_parameters(tracker.sam_mask_decoder, seed + 2)
    randomize_parameters(official.backbone.vision_backbone.sam2_convs, seed + 3)
    with torch.no_grad():
        tracker.no_mem_embed.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 4))
    meta_path = osp.join(workdir, 'sam3_official_layout.pt')
    atomic_torch_save(official_sam3.official_state_dict_in_checkpoint_layout(official),
                      meta_path)
    state, report = convert_official_state_dict(torch.load(meta_path, weights_only=True))
    if report['unknown']:
        raise RuntimeError('converter left keys unconverted:\n' + format_report(report))
    weights = osp.join(workdir, 'mmsam3.pth')
    torch.save(dict(state_dict=state), weights)
    return official, weights


def _config(size, bpe_path):
    from mmengine.config import Config

    cfg = Config.fromfile(official_sam3.INTERACTIVE_CONFIGS[size])
    cfg.model.tokenizer.bpe_path = bpe_path or official_sam3.BPE_PATH
    cfg.model.interactive_head.max_hole_area = 0.0  # see the module docstring
    cfg.default_scope = 'mmdet'
    return cfg


@torch.no_grad()
def run_parity(image, size='tiny', seed=0, bpe_path=None, verbose=True):
    """Returns ``{measure: worst value}`` over the cases, and the per-case rows."""
    from PIL import Image
    from sam3.model.sam3_image_processor import Sam3Processor

    from mmsam3.apis import SAM3Predictor

    pil = Image.open(image).convert('RGB')
    width, height = pil.size
    worst = dict(low_res_logits=0.0, iou=0.0, mask_pixels=0.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        official, weights = build_pair(size, seed, tmp, bpe_path)
        img_size = official_sam3.official_sizes(size)['img_size']
        processor = Sam3Processor(official, resolution=img_size, device='cpu')
        t0 = time.perf_counter()
        state = processor.set_image(pil)
        refs, previous = [], None
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # Meta's "skipping the post-processing" warning
            for name, kw in cases_for(width, height):
                kw = dict(kw)
                if kw.get('mask_input') == 'previous':
                    kw['mask_input'] = previous
                args = {k: (np.asarray(v, dtype=np.float32) if k != 'multimask_output' and
                            v is not None else v) for k, v in kw.items()}
                masks, ious, low = official.predict_inst(state, **args)
                best = int(np.argmax(ious))
                previous = low[best:best + 1]
                refs.append((name, kw, masks, ious, low))
        t_meta = time.perf_counter() - t0
        del official, processor, state
        predictor = SAM3Predictor(_config(size, bpe_path), weights=weights, device='cpu')
        t0 = time.perf_counter()
        predictor.set_image(image)
        for name, kw, masks, ious, low in refs:
            kw = dict(kw)
            ours = predictor.predict(
                points=kw.get('point_coords'), point_labels=kw.get('point_labels'),
                box=kw.get('box'), mask_input=kw.get('mask_input'),
                multimask_output=kw['multimask_output'])
            d_low = float(np.abs(ours['low_res_logits'] - low).max())
            d_iou = float(np.abs(ours['scores'] - ious).max())
            d_px = float((ours['masks'] != masks).mean())
            rows.append((name, d_low, d_iou, d_px, float(masks.mean()), len(ious)))
            worst['low_res_logits'] = max(worst['low_res_logits'], d_low)
            worst['iou'] = max(worst['iou'], d_iou)
            worst['mask_pixels'] = max(worst['mask_pixels'], d_px)
        t_ours = time.perf_counter() - t0
    if verbose:
        print(f'interactive parity: size={size} seed={seed} image={image} ({width}x{height}), '
              f'{len(rows)} cases; set_image + all cases: Meta {t_meta:.2f} s, '
              f'mmsam3 {t_ours:.2f} s')
        for name, d_low, d_iou, d_px, area, num in rows:
            print(f'  {name:52s} low-res {d_low:.2e}  IoU {d_iou:.2e}  mask px {d_px:.2e}  '
                  f'({num} mask{"s" if num > 1 else ""}, {area:.0%} foreground)')
        for k, tol in TOLERANCES.items():
            print(f'max |mmsam3 - Meta| {k:15s} {worst[k]:.3e} (tolerance {tol:g})')
    return worst, rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('--size', choices=('tiny', 'full'), default='tiny')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--bpe-path', default=None)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    worst, _ = run_parity(args.image, args.size, args.seed, args.bpe_path)
    ok = all(worst[k] <= tol for k, tol in TOLERANCES.items())
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
