"""Small fixtures shared by the tests (synthetic data written to a temporary folder)."""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from mmsam3.testing.random_weights import randomize_parameters  # noqa: F401  (re-export)


def make_tiny_coco(root, num_images=4, size=64, seed=0, classes=('box', )):
    """Write ``root/images/*.png`` and ``root/annotations.json`` with one filled box per image."""
    import cv2

    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img = np.zeros((size, size, 3), np.uint8)
        w, h = rng.integers(size // 4, size // 2, size=2)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        img[y:y + h, x:x + w] = (0, 200, 255)
        name = f'{i:04d}.png'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
        annotations.append(
            dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[int(x), int(y), int(w), int(h)],
                 area=int(w * h), iscrowd=0))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(classes)]
    with open(osp.join(root, 'annotations.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return root


def write_coco_split(split_dir, categories, images, ann_name='_annotations.coco.json', size=32):
    """Write one Roboflow-layout split: ``split_dir/<ann_name>`` and its PNGs next to it.

    ``categories``: list of ``(id, name)``; ``images``: one list per image of
    ``(category_id, [x, y, w, h])`` boxes (drawn as filled rectangles, the rectangle is also the
    polygon mask). Image ids start at 1.
    Returns the json path.
    """
    import cv2

    os.makedirs(split_dir, exist_ok=True)
    img_infos, anns = [], []
    for i, boxes in enumerate(images):
        img = np.full((size, size, 3), 200, np.uint8)
        for cat_id, (x, y, w, h) in boxes:
            img[int(y):int(y + h), int(x):int(x + w)] = (40 * cat_id % 255, 80, 160)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=cat_id,
                             bbox=[x, y, w, h], area=w * h, iscrowd=0,
                             segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
        name = f'{i:04d}.png'
        cv2.imwrite(osp.join(split_dir, name), img)
        img_infos.append(dict(id=i + 1, file_name=name, width=size, height=size))
    path = osp.join(split_dir, ann_name)
    with open(path, 'w') as f:
        json.dump(dict(images=img_infos, annotations=anns,
                       categories=[dict(id=c, name=n, supercategory='none')
                                   for c, n in categories]), f)
    return path


def random_linear_functional(reference, seed=0):
    """A scalar function ``f(outputs) = sum_k <W_k, outputs[k]>`` with seeded random ``W_k``
    shaped like ``reference[k]``: one backward pass through it checks the gradients of every
    output of a parity test at once."""
    import torch

    g = torch.Generator().manual_seed(seed)
    weights = {k: torch.randn(v.shape, generator=g) for k, v in reference.items()}

    def functional(outputs):
        return sum((outputs[k] * weights[k]).sum() for k in weights)

    return functional


def free_port():
    """A TCP port on loopback that nothing listens on right now (for torchrun's master)."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(cmd: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None,
             timeout: float = 900) -> Tuple[int, str]:
    """``cmd`` in a child process with one OpenMP thread and unbuffered output (``env``
    entries added): ``(return code, stdout + stderr)``."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    full_env.update(env or {})
    proc = subprocess.run(list(cmd), cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def make_shapes(root: str, train: int = 8, val: int = 4, size: int = 168) -> str:
    """The synthetic shapes data (``tools/dataset_converters/make_shapes_dataset.py``) in
    ``root``; returns ``root`` with a trailing slash (a ``data_root``)."""
    rc, out = run_tool([sys.executable,
                        osp.join(REPO, 'tools/dataset_converters/make_shapes_dataset.py'), root,
                        '--train', str(train), '--val', str(val), '--size', str(size)], cwd=root)
    if rc != 0:
        raise RuntimeError(f'make_shapes_dataset.py failed:\n{out[-3000:]}')
    return root.rstrip('/') + '/'
