"""Write a small synthetic COCO-format dataset of coloured shapes, in the Roboflow layout.

    python tools/dataset_converters/make_shapes_dataset.py OUT --train 200 --val 40 --seed 0
        [--size 224] [--radius 0.08 0.16] [--preset compositional|distinct] [--test 0]
        [--mask-format polygon|rle] [--roboflow-supercategory]

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

A shape's circumradius is drawn uniformly from ``--radius MIN MAX`` (fractions of the image
side); a shape that finds no free room after 50 tries is left out, and so is not annotated.
Shapes do not overlap, so each instance mask is exactly the pixels drawn
for it. Masks are polygons (default; circles as 32-gons, the polygon that is drawn) or compressed
RLE; every annotation has ``bbox`` (xywh), ``area`` (mask area), ``iscrowd`` 0 and ``segmentation``.
``--roboflow-supercategory`` adds Roboflow's supercategory-only category id 0 ("shapes") with no
annotation, to exercise that path. Output is deterministic given ``--seed`` (PNG images).
"""
import argparse
import json
import os
import os.path as osp

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
PRESETS = {
    'compositional': (CATEGORIES, DISTRACTORS),
    'distinct': (DISTINCT_CATEGORIES, DISTINCT_DISTRACTORS),
}


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
    t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6]) + rng.uniform(-0.3, 0.3)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def draw_image(rng, size: int, radius=(0.08, 0.16), preset: str = 'compositional'):
    """One image and its objects: list of (name, polygon) for targets and distractors."""
    categories, distractors = PRESETS[preset]
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
        for _ in range(50):  # rejection sampling: no two shapes' boxes overlap
            r = rng.uniform(*radius) * size
            cx, cy = rng.uniform(r + 2, size - r - 2, size=2)
            box = (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)
            if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                   for _, _, b in placed):
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


def write_split(out_dir: str, num: int, rng, size: int, mask_format: str,
                supercategory: bool, radius=(0.08, 0.16),
                preset: str = 'compositional') -> dict:
    os.makedirs(out_dir, exist_ok=True)
    categories_names = PRESETS[preset][0]
    cat_id = {n: i + 1 for i, n in enumerate(categories_names)}
    categories = [dict(id=0, name='shapes', supercategory='none')] if supercategory else []
    categories += [dict(id=cat_id[n], name=n, supercategory='shapes') for n in categories_names]
    images, annotations = [], []
    for i in range(num):
        img, objects = draw_image(rng, size, radius, preset)
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(out_dir, name), img)
        images.append(dict(id=i, file_name=name, width=size, height=size))
        for obj_name, poly in objects:
            if obj_name not in cat_id:
                continue  # distractor: drawn, not annotated
            # The mask is exactly what fillPoly drew (integer vertices), so rasterise the same way.
            ipoly = np.round(poly).astype(np.int32)
            m = np.zeros((size, size), np.uint8)
            cv2.fillPoly(m, [ipoly], 1)
            ys, xs = np.nonzero(m)
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            if mask_format == 'rle':
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
                        supercategory: bool = False, radius=(0.08, 0.16),
                        preset: str = 'compositional') -> dict:
    """Write the dataset; returns ``{split: coco_dict}``. Each split has its own RNG stream."""
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
            preset)
    return out_splits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help='output folder (Roboflow layout)')
    p.add_argument('--train', type=int, default=200, help='number of train images')
    p.add_argument('--val', type=int, default=40, help='number of valid images')
    p.add_argument('--test', type=int, default=0, help='number of test images (0: no test/)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', type=int, default=224, help='square image side')
    p.add_argument('--radius', type=float, nargs=2, default=(0.08, 0.16), metavar=('MIN', 'MAX'),
                   help='shape radius range, as fractions of the image side')
    p.add_argument('--preset', choices=sorted(PRESETS), default='compositional',
                   help='category set: compositional (6 categories sharing colours and shapes) '
                   'or distinct (4 categories, one colour each)')
    p.add_argument('--mask-format', choices=('polygon', 'rle'), default='polygon')
    p.add_argument('--roboflow-supercategory', action='store_true',
                   help="add Roboflow's supercategory-only category id 0 ('shapes')")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    splits = make_shapes_dataset(args.out, args.train, args.val, args.seed, args.size,
                                 args.test, args.mask_format, args.roboflow_supercategory,
                                 args.radius, args.preset)
    for split, coco in splits.items():
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} instances -> "
              f"{osp.join(args.out, split, '_annotations.coco.json')}")


if __name__ == '__main__':
    main()
