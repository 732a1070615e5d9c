"""Helpers for the dataset / transform tests (imported by conftest and the tests)."""
import json
import os
import os.path as osp

import cv2
import numpy as np


def draw_image(path, h, w, rects=(), colour=(0, 200, 255)):
    """Black (h, w) image with filled rectangles ``(x, y, bw, bh)`` in ``colour`` (BGR)."""
    img = np.zeros((h, w, 3), np.uint8)
    for x, y, bw, bh in rects:
        img[int(y):int(y + bh), int(x):int(x + bw)] = colour
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, img)
    return img


def write_json(path, data):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


def rect_polygon(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]
