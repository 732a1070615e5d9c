"""Write a small synthetic COCO-format dataset of coloured shapes, in the Roboflow layout.

    python tools/dataset_converters/make_shapes_dataset.py OUT --train 200 --val 40 --seed 0
        [--size 224] [--radius 0.08 0.16] [--preset compositional|distinct|hard] [--test 0]
        [--background plain|textured] [--overlap 0.0] [--mask-format polygon|rle]
        [--roboflow-supercategory]

Layout (the Roboflow / RF100-VL layout, so ``SAM3PromptCocoDataset(data_root=OUT, split=...)``
reads it exactly as a downloaded Roboflow set)::

    OUT/train/_annotations.coco.json   OUT/train/000000.png ...
    OUT/valid/_annotations.coco.json   OUT/valid/000000.png ...
    OUT/test/...                       (only with --test K > 0)

Each image has a textured light background, 1-3 target categories with 1-3 instances each, and
1-3 distractors that are drawn but not annotated; about 1 image in 8 has distractors only
(negative prompts only). Two category sets (``--preset``):

- ``compositional`` (default; ids 1..6): "red circle", "blue square", "green triangle",
  "yellow circle", "red square", "blue triangle"; distractors are the other colour/shape pairs
  (e.g. "green circle"), so matching a phrase needs colour *and* shape;
- ``distinct`` (ids 1..4): "red circle", "blue square", "green triangle", "yellow circle";
  distractors are purple or grey shapes, so the colour word alone decides. The from-scratch
  learning check (``tools/analysis_tools/learning_check.py``) uses it.
- ``hard`` (ids 1..4): "red star", "blue hexagon", "green triangle", "yellow circle" (two new
  shape types); distractors are purple or grey shapes of all five types. Unless given, it
  defaults to ``--background textured --overlap 0.3`` and smaller shapes
  (``--radius 0.1 0.2``); the retention check's harder data.

``--background textured`` draws stripes of random orientation and period, a checkerboard tint
and blotches over the background (muted colours, none of a category's). ``--overlap F`` lets
two shapes' boxes share up to ``F`` of the smaller box; the later shape is drawn on top, and each
instance's mask, box and area are its *visible* pixels (stored as RLE where a shape is occluded).

A shape's circumradius is drawn uniformly from ``--radius MIN MAX`` (fractions of the image
side); a shape that finds no free room after 50 tries is left out, and so is not annotated.
Without ``--overlap`` shapes do not overlap, so each instance mask is exactly the pixels drawn
for it. Masks are polygons (default; circles as 32-gons, the polygon that is drawn) or compressed
RLE; every annotation has ``bbox`` (xywh), ``area`` (mask area), ``iscrowd`` 0 and ``segmentation``.
``--roboflow-supercategory`` adds Roboflow's supercategory-only category id 0 ("shapes") with no
annotation, to exercise that path. Output is deterministic given ``--seed`` (PNG images).
"""
import argparse
import json
import os
import os.path as osp
from typing import Optional

import cv2
import numpy as np
from pycocotools import mask as mask_utils

COLOURS = {  # BGR, as cv2 writes them
    'red': (40, 40, 220),
    'green': (50, 180, 50),
    'blue': (220, 80, 30),
    'yellow': (30, 220, 235),
    'purple': (150, 40, 140),
    'grey': (110, 110, 110),
}
SHAPES = ('circle', 'square', 'triangle')
HARD_SHAPES = SHAPES + ('star', 'hexagon')
# "compositional": categories share colours and shapes ("red circle" vs "red square"), and the
# distractors are the other colour/shape combinations, so a phrase is only matched by binding
# its colour to its shape.
CATEGORIES = ('red circle', 'blue square', 'green triangle', 'yellow circle', 'red square',
              'blue triangle')
DISTRACTORS = tuple(f'{c} {s}' for c in ('red', 'green', 'blue', 'yellow') for s in SHAPES
                    if f'{c} {s}' not in CATEGORIES)
# "distinct": every category has a colour of its own and the distractors are purple or grey
# shapes; the colour word decides, which a model trained from scratch learns in minutes.
DISTINCT_CATEGORIES = ('red circle', 'blue square', 'green triangle', 'yellow circle')
DISTINCT_DISTRACTORS = tuple(f'{c} {s}' for c in ('purple', 'grey') for s in SHAPES)
# "hard": distinct colours again, two new shape types, distractors of every shape; with a
# textured background, smaller shapes and overlaps by default (HARD_DEFAULTS).
HARD_CATEGORIES = ('red star', 'blue hexagon', 'green triangle', 'yellow circle')
HARD_DISTRACTORS = tuple(f'{c} {s}' for c in ('purple', 'grey') for s in HARD_SHAPES)
PRESETS = {
    'compositional': (CATEGORIES, DISTRACTORS),
    'distinct': (DISTINCT_CATEGORIES, DISTINCT_DISTRACTORS),
    'hard': (HARD_CATEGORIES, HARD_DISTRACTORS),
}
HARD_DEFAULTS = dict(background='textured', overlap=0.3, radius=(0.1, 0.2))
BACKGROUNDS = ('plain', 'textured')


def shape_polygon(shape: str, cx: float, cy: float, r: float, rng) -> np.ndarray:
    """Polygon (K, 2) float of a shape of "radius" r centred at (cx, cy)."""
    if shape == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    if shape == 'square':
        a = rng.uniform(-0.3, 0.3)  # small rotation so boxes are not always the shape itself
        c, s = np.cos(a), np.sin(a)
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.85
        return pts @ np.array([[c, s], [-s, c]]) + [cx, cy]
    if shape == 'star':  # five points, inner radius 0.45 r
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False) + rng.uniform(-0.3, 0.3)
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
    if shape == 'hexagon':
        t = np.linspace(0, 2 * np.pi, 6, endpoint=False) + rng.uniform(-0.3, 0.3)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6]) + rng.uniform(-0.3, 0.3)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def textured_background(rng, size: int) -> np.ndarray:
    """Muted stripes + checkerboard tint + blotches + noise (uint8 BGR, size x size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.integers(120, 200, size=3).astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img = base + rng.uniform(10, 30) * stripes[..., None] * rng.uniform(0.5, 1, size=3)
    cell = int(rng.integers(12, 40))
    checker = ((xx // cell + yy // cell) % 2)[..., None]
    img = img + checker * rng.uniform(-20, 20, size=3)
    for _ in range(int(rng.integers(2, 6))):  # soft grey-ish blotches
        cx, cy = rng.uniform(0, size, size=2)
        rad = rng.uniform(0.05, 0.2) * size
        blob = np.exp(-((xx - cx)**2 + (yy - cy)**2) / (2 * rad**2))[..., None]
        img = img + blob * rng.uniform(-35, 35)
    img = img + rng.normal(0, 10, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def box_overlap(a, b) -> float:
    """Intersection of two xyxy boxes over the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / small


def draw_image(rng, size: int, radius=(0.08, 0.16), preset: str = 'compositional',
               background: str = 'plain', overlap: float = 0.0):
    """One image and its objects: list of (name, polygon) for targets and distractors, in
    drawing order (a later one covers an earlier one where they overlap)."""
    categories, distractors = PRESETS[preset]
    if background == 'textured':
        img = textured_background(rng, size)
    else:
        base = rng.integers(170, 235, size=3)
        img = np.clip(base + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    if rng.random() < 1 / 8:
        names = []
    else:
        cats = rng.choice(len(categories), size=rng.integers(1, 4), replace=False)
        names = [categories[c] for c in cats for _ in range(rng.integers(1, 4))]
    names += [distractors[d] for d in rng.integers(0, len(distractors), rng.integers(1, 4))]
    order = rng.permutation(len(names))
    placed = []  # (name, polygon, (x1, y1, x2, y2))
    for i in order:
        name = names[i]
        for _ in range(50):  # rejection sampling: boxes overlap by at most `overlap`
            r = rng.uniform(*radius) * size
            cx, cy = rng.uniform(r + 2, size - r - 2, size=2)
            box = (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)
            if overlap > 0:
                fits = all(box_overlap(box, b) <= overlap for _, _, b in placed)
            else:
                fits = all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                           for _, _, b in placed)
            if fits:
                colour, shape = name.split(' ')
                poly = shape_polygon(shape, cx, cy, r, rng)
                placed.append((name, poly, box))
                break
    for name, poly, _ in placed:
        colour = COLOURS[name.split(' ')[0]]
        jitter = rng.integers(-15, 16, size=3)
        col = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter))
        cv2.fillPoly(img, [np.round(poly).astype(np.int32)], col)
    return img, [(n, p) for n, p, _ in placed]


def visible_masks(objects, size: int):
    """Each object's visible pixels (uint8 masks): its fill minus every later object's."""
    masks = []
    for _, poly in objects:
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        masks.append(m)
    covered = np.zeros((size, size), np.uint8)
    for m in masks[::-1]:
        m &= 1 - covered
        covered |= (m > 0).astype(np.uint8)
    return masks


def write_split(out_dir: str, num: int, rng, size: int, mask_format: str,
                supercategory: bool, radius=(0.08, 0.16),
                preset: str = 'compositional', background: str = 'plain',
                overlap: float = 0.0) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    categories_names = PRESETS[preset][0]
    cat_id = {n: i + 1 for i, n in enumerate(categories_names)}
    categories = [dict(id=0, name='shapes', supercategory='none')] if supercategory else []
    categories += [dict(id=cat_id[n], name=n, supercategory='shapes') for n in categories_names]
    images, annotations = [], []
    for i in range(num):
        img, objects = draw_image(rng, size, radius, preset, background, overlap)
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(out_dir, name), img)
        images.append(dict(id=i, file_name=name, width=size, height=size))
        visible = visible_masks(objects, size) if overlap > 0 else [None] * len(objects)
        for (obj_name, poly), seen in zip(objects, visible):
            if obj_name not in cat_id:
                continue  # distractor: drawn, not annotated
            # The mask is exactly what fillPoly drew (integer vertices), so rasterise the same way.
            ipoly = np.round(poly).astype(np.int32)
            m = np.zeros((size, size), np.uint8)
            cv2.fillPoly(m, [ipoly], 1)
            occluded = seen is not None and (seen != m).any()
            if occluded:
                if not seen.any():
                    continue  # wholly covered: nothing to annotate
                m = seen
            ys, xs = np.nonzero(m)
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            if mask_format == 'rle' or occluded:
                rle = mask_utils.encode(np.asfortranarray(m))
                segm = dict(size=[size, size], counts=rle['counts'].decode('ascii'))
            else:
                segm = [ipoly.astype(float).reshape(-1).tolist()]
            annotations.append(
                dict(id=len(annotations) + 1, image_id=i, category_id=cat_id[obj_name],
                     bbox=[int(x1), int(y1), int(x2 - x1), int(y2 - y1)], area=int(m.sum()),
                     iscrowd=0, segmentation=segm))
    coco = dict(info=dict(description='mmsam3 synthetic shapes'), images=images,
                annotations=annotations, categories=categories)
    with open(osp.join(out_dir, '_annotations.coco.json'), 'w') as f:
        json.dump(coco, f)
    return coco


def make_shapes_dataset(out: str, train: int, val: int, seed: int = 0, size: int = 224,
                        test: int = 0, mask_format: str = 'polygon',
                        supercategory: bool = False, radius=None,
                        preset: str = 'compositional', background: Optional[str] = None,
                        overlap: Optional[float] = None) -> dict:
    """Write the dataset; returns ``{split: coco_dict}``. Each split has its own RNG stream.

    ``radius``, ``background`` and ``overlap`` left at None take the preset's defaults
    (``HARD_DEFAULTS`` for ``hard``; ``(0.08, 0.16)``, ``'plain'``, 0 otherwise).
    """
    defaults = HARD_DEFAULTS if preset == 'hard' else dict(background='plain', overlap=0.0,
                                                           radius=(0.08, 0.16))
    radius = defaults['radius'] if radius is None else radius
    background = defaults['background'] if background is None else background
    overlap = defaults['overlap'] if overlap is None else overlap
    if background not in BACKGROUNDS:
        raise ValueError(f'background must be one of {BACKGROUNDS}, got {background!r}')
    if not 0 <= overlap < 1:
        raise ValueError(f'overlap must be in [0, 1) (the share of the smaller box two shapes may '
                         f'cover), got {overlap}')
    if mask_format not in ('polygon', 'rle'):
        raise ValueError(f"mask_format must be 'polygon' or 'rle', got {mask_format!r}")
    if size < 64:
        raise ValueError(f'size must be >= 64, got {size}')
    if preset not in PRESETS:
        raise ValueError(f'preset must be one of {sorted(PRESETS)}, got {preset!r}')
    if len(radius) != 2 or not 0 < radius[0] <= radius[1] <= 0.25:
        raise ValueError(f'radius must be (min, max) with 0 < min <= max <= 0.25 of the image '
                         f'side, got {tuple(radius)}')
    out_splits = {}
    for k, (split, num) in enumerate((('train', train), ('valid', val), ('test', test))):
        if num <= 0 and split == 'test':
            continue
        rng = np.random.default_rng([seed, k])
        out_splits[split] = write_split(
            osp.join(out, split), num, rng, size, mask_format, supercategory, tuple(radius),
            preset, background, overlap)
    return out_splits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help='output folder (Roboflow layout)')
    p.add_argument('--train', type=int, default=200, help='number of train images')
    p.add_argument('--val', type=int, default=40, help='number of valid images')
    p.add_argument('--test', type=int, default=0, help='number of test images (0: no test/)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', type=int, default=224, help='square image side')
    p.add_argument('--radius', type=float, nargs=2, default=None, metavar=('MIN', 'MAX'),
                   help='shape radius range, as fractions of the image side (default 0.08 0.16; '
                   '0.1 0.2 for --preset hard)')
    p.add_argument('--preset', choices=sorted(PRESETS), default='compositional',
                   help='category set: compositional (6 categories sharing colours and shapes), '
                   'distinct (4 categories, one colour each) or hard (distinct colours, stars '
                   'and hexagons, textured background, smaller overlapping shapes)')
    p.add_argument('--background', choices=BACKGROUNDS, default=None,
                   help='plain (default) or textured (default of --preset hard)')
    p.add_argument('--overlap', type=float, default=None,
                   help='share of the smaller box two shapes may cover (0: none, the default; '
                   '0.3 for --preset hard); masks are the visible pixels')
    p.add_argument('--mask-format', choices=('polygon', 'rle'), default='polygon')
    p.add_argument('--roboflow-supercategory', action='store_true',
                   help="add Roboflow's supercategory-only category id 0 ('shapes')")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    splits = make_shapes_dataset(args.out, args.train, args.val, args.seed, args.size,
                                 args.test, args.mask_format, args.roboflow_supercategory,
                                 args.radius, args.preset, args.background, args.overlap)
    for split, coco in splits.items():
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} instances -> "
              f"{osp.join(args.out, split, '_annotations.coco.json')}")


if __name__ == '__main__':
    main()
