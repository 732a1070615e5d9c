"""Segment every instance of one or more noun phrases in an image with SAM 3.

    python tools/demo.py demo.jpg configs/sam3/sam3_vit-l_zeroshot_coco.py \
        --weights checkpoints/sam3_vit-l_mmsam3.pth --texts "fish" "shark" --out-dir outputs
    # exemplar boxes (x1 y1 x2 y2 in image pixels), positive unless --box-labels says 0:
    python tools/demo.py demo.jpg CONFIG --weights CKPT --texts "fish" \
        --boxes 10 20 80 90  200 40 260 120 --box-labels 1 0 --out-dir outputs
    # bf16 (or fp16) inference, CPU or GPU (default: the config's model.test_cfg.dtype):
    python tools/demo.py demo.jpg CONFIG --weights CKPT --texts "fish" --dtype bf16

Writes ``OUT_DIR/<image>.jpg`` (masks, boxes and phrase labels drawn) and ``OUT_DIR/<image>.json``
(one entry per instance: phrase, score, box xyxy, mask as COCO RLE).

Interactive segmentation (one object from clicks and / or a box; needs a config with the
interactive head, e.g. ``configs/_base_/models/sam3_vit-l_interactive.py``)::

    python tools/demo.py demo.jpg CONFIG --weights CKPT --points 500,375 620,300,0
    python tools/demo.py demo.jpg CONFIG --weights CKPT --box 425,600,700,875 --points 575,750

``--points x,y[,label]``: image pixels, label 1 (positive, default) or 0 (negative);
``--box x0,y0,x1,y1``. One click alone gives three candidate masks (``--single-mask`` for one);
the picture shows the highest-scoring mask with the clicks and the box, the JSON every mask
(predicted IoU, COCO RLE).
"""
import argparse
import json
import os
import os.path as osp

import mmcv
import numpy as np
import torch

import mmsam3  # noqa: F401  (registers modules)
from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='model config')
    parser.add_argument('--weights', help='checkpoint (default: the config\'s load_from)')
    parser.add_argument('--texts', nargs='*', default=[], help='noun phrases, one per prompt')
    parser.add_argument('--boxes', nargs='*', type=float, default=[],
                        help='exemplar boxes x1 y1 x2 y2 ... in image pixels, used by every '
                        'prompt (box-only prompting when no --texts is given)')
    parser.add_argument('--box-labels', nargs='*', type=int, default=None,
                        help='1 (positive) or 0 (negative) per box; default all positive')
    parser.add_argument('--points', nargs='*', default=[], metavar='X,Y[,LABEL]',
                        help='interactive: clicks in image pixels, label 1 (default) or 0')
    parser.add_argument('--box', metavar='X0,Y0,X1,Y1',
                        help='interactive: one box around the object, image pixels')
    parser.add_argument('--single-mask', action='store_true',
                        help='interactive: one mask even for a single click')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--score-thr', type=float, default=0.5)
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', help='float32 / bfloat16 / float16 (bf16 / fp16); default '
                        "the config's model.test_cfg.dtype, else float32")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides key=value (e.g. model.tokenizer.bpe_path=...)')
    args = parser.parse_args(argv)
    if len(args.boxes) % 4:
        parser.error('--boxes takes groups of 4 numbers (x1 y1 x2 y2)')
    if args.box_labels is not None and len(args.box_labels) != len(args.boxes) // 4:
        parser.error('--box-labels needs one label per box')
    args.clicks, args.click_labels, args.click_box = _parse_interactive(parser, args)
    interactive = args.clicks is not None or args.click_box is not None
    if interactive and (args.texts or args.boxes):
        parser.error('--points / --box (one object) and --texts / --boxes (every instance of a '
                     'phrase) are separate runs')
    if not interactive and not args.texts and not args.boxes:
        parser.error('give at least one --texts phrase or one --boxes exemplar, or --points / '
                     '--box for one object')
    if args.dtype is not None:
        from mmsam3.utils.inference_precision import resolve_dtype
        try:
            resolve_dtype(args.dtype)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def _numbers(parser, text, what):
    try:
        return [float(v) for v in text.split(',')]
    except ValueError:
        parser.error(f'{what}: expected comma-separated numbers, got {text!r}')


def _parse_interactive(parser, args):
    """``--points x,y[,label]`` and ``--box x0,y0,x1,y1`` -> arrays (None when absent)."""
    clicks = labels = box = None
    if args.points:
        pts = [_numbers(parser, p, '--points') for p in args.points]
        if any(len(p) not in (2, 3) for p in pts):
            parser.error('--points takes x,y or x,y,label per click (label 1 positive, '
                         '0 negative)')
        clicks = [p[:2] for p in pts]
        labels = [p[2] if len(p) == 3 else 1 for p in pts]
        if any(lab not in (0, 1) for lab in labels):
            parser.error(f'--points labels must be 1 (positive) or 0 (negative), got {labels}')
        labels = [int(lab) for lab in labels]
    if args.box is not None:
        box = _numbers(parser, args.box, '--box')
        if len(box) != 4:
            parser.error('--box takes x0,y0,x1,y1')
    return clicks, labels, box


def run_interactive(args):
    """Clicks / a box through :class:`SAM3Predictor`; returns its result dict."""
    from mmengine.config import Config

    from mmsam3.apis import SAM3Predictor

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    predictor = SAM3Predictor(cfg, weights=args.weights, device=args.device, dtype=args.dtype)
    predictor.set_image(args.image)
    single_click = args.clicks is not None and len(args.clicks) == 1 and args.click_box is None
    return predictor.predict(points=args.clicks, point_labels=args.click_labels,
                             box=args.click_box,
                             multimask_output=single_click and not args.single_mask)


def draw_interactive(image_path, result, args, out_file):
    """The best mask over the image, with the clicks (green +, red -) and the box."""
    import cv2

    img = mmcv.imread(image_path)
    best = int(np.argmax(result['scores']))
    mask = result['masks'][best]
    colour = np.array([255, 144, 30], dtype=np.float32)  # BGR
    img = img.astype(np.float32)
    img[mask] = img[mask] * 0.45 + colour * 0.55
    img = img.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, (255, 255, 255), 1)
    if args.click_box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in args.click_box)
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 255, 255), 2)
    for (x, y), label in zip(args.clicks or [], args.click_labels or []):
        centre = (int(round(x)), int(round(y)))
        cv2.circle(img, centre, 5, (0, 200, 0) if label else (0, 0, 230), -1)
        cv2.circle(img, centre, 5, (255, 255, 255), 1)
    mmcv.imwrite(img, out_file)


def main_interactive(args):
    from pycocotools import mask as mask_util

    result = run_interactive(args)
    os.makedirs(args.out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(args.image))[0]
    out_img = osp.join(args.out_dir, f'{stem}.jpg')
    out_json = osp.join(args.out_dir, f'{stem}.json')
    draw_interactive(args.image, result, args, out_img)
    masks = []
    for i, score in enumerate(result['scores']):
        rle = mask_util.encode(np.asfortranarray(result['masks'][i].astype(np.uint8)))
        masks.append(dict(score=float(score), area=int(result['masks'][i].sum()),
                          mask=dict(size=rle['size'], counts=rle['counts'].decode('ascii'))))
    best = int(np.argmax(result['scores']))
    with open(out_json, 'w') as f:
        json.dump(dict(image=args.image, points=args.clicks, point_labels=args.click_labels,
                       box=args.click_box, best=best, object_score=result['object_score'],
                       masks=masks), f, indent=1)
    print(f'{len(masks)} mask(s); best {best} (predicted IoU {masks[best]["score"]:.3f}, '
          f'{masks[best]["area"]} pixels)')
    print(f'picture: {out_img}\npredictions: {out_json}')


def build_model(args):
    from mmdet.apis import init_detector
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    from mmsam3.utils.inference_precision import inference_dtype_from_cfg, set_inference_dtype

    weights = args.weights or cfg.get('load_from')
    model = init_detector(cfg, weights, device=args.device, palette='random')
    set_inference_dtype(model, getattr(args, 'dtype', None) or inference_dtype_from_cfg(cfg))
    return model, cfg


def run(model, cfg, image_path, texts, boxes, box_labels):
    """One image through the model's test pipeline; returns the predicted ``DetDataSample``."""
    from mmcv.transforms import Compose

    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline
                if t['type'] not in ('LoadAnnotations', 'mmdet.LoadAnnotations')]
    texts = list(texts) or ['visual']  # the official phrase for box-only prompting
    data = Compose(pipeline)(dict(img_path=image_path, img_id=0, text=texts))
    sample = data['data_samples']
    if boxes is not None and len(boxes):
        sx, sy = sample.metainfo.get('scale_factor', (1.0, 1.0))
        scaled = torch.as_tensor(boxes, dtype=torch.float32) * torch.tensor([sx, sy, sx, sy])
        labels = torch.as_tensor(box_labels if box_labels is not None else [1] * len(boxes))
        sample.set_metainfo(dict(prompt_boxes=[scaled] * len(texts),
                                 prompt_box_labels=[labels] * len(texts)))
    with torch.no_grad():
        return model.test_step(dict(inputs=[data['inputs']], data_samples=[sample]))[0]


def to_json(pred, score_thr):
    from pycocotools import mask as mask_util

    inst = pred.pred_instances
    keep = (inst.scores >= score_thr).nonzero().flatten().tolist()
    out = []
    for i in keep:
        entry = dict(phrase=inst.label_names[i], label=int(inst.labels[i]),
                     score=float(inst.scores[i]),
                     bbox=[round(float(v), 2) for v in inst.bboxes[i]])
        if 'masks' in inst:
            rle = mask_util.encode(np.asfortranarray(inst.masks[i].cpu().numpy().astype(np.uint8)))
            entry['mask'] = dict(size=rle['size'], counts=rle['counts'].decode('ascii'))
        out.append(entry)
    return out


def draw(image_path, pred, texts, score_thr, out_file):
    from mmdet.visualization import DetLocalVisualizer

    visualizer = DetLocalVisualizer(name=f'sam3_demo_{os.getpid()}')
    visualizer.dataset_meta = dict(classes=tuple(texts) or ('visual', ), palette='random')
    image = mmcv.imconvert(mmcv.imread(image_path), 'bgr', 'rgb')
    visualizer.add_datasample('demo', image, pred, draw_gt=False, pred_score_thr=score_thr,
                              out_file=out_file)


def main(argv=None):
    args = parse_args(argv)
    if args.clicks is not None or args.click_box is not None:
        try:
            return main_interactive(args)
        except (ValueError, RuntimeError) as exc:  # bad clicks, a config without the head
            raise SystemExit(f'error: {exc}')
    model, cfg = build_model(args)
    boxes = np.asarray(args.boxes, dtype=np.float32).reshape(-1, 4) if args.boxes else None
    pred = run(model, cfg, args.image, args.texts, boxes, args.box_labels)
    os.makedirs(args.out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(args.image))[0]
    out_img = osp.join(args.out_dir, f'{stem}.jpg')
    out_json = osp.join(args.out_dir, f'{stem}.json')
    draw(args.image, pred, args.texts, args.score_thr, out_img)
    results = to_json(pred, args.score_thr)
    with open(out_json, 'w') as f:
        json.dump(dict(image=args.image, prompts=args.texts or ['visual'], instances=results), f,
                  indent=1)
    print(f'{len(results)} instances with score >= {args.score_thr}')
    print(f'picture: {out_img}\npredictions: {out_json}')


if __name__ == '__main__':
    main()
