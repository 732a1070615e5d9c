"""Tiny SAM 3 config, checkpoint (seeded random weights) and images for the inference API tests."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def write_tiny_infer_config(path, bpe_path, dtype=None, model_type=None):
    """A runnable tiny config: the tiny model, the COCO prompt runtime and a 168 square resize;
    ``dtype`` sets ``model.test_cfg.dtype``, ``model_type`` the model's registered type."""
    model = [f"tokenizer=dict(bpe_path='{bpe_path}')"]
    if dtype is not None:
        model.append(f"test_cfg=dict(dtype='{dtype}')")
    if model_type is not None:
        model.append(f"type='{model_type}'")
    path.write_text(
        f"_base_ = ['{REPO}/configs/_base_/models/sam3_tiny.py',\n"
        f"          '{REPO}/configs/_base_/datasets/sam3_coco_prompt.py',\n"
        f"          '{REPO}/configs/_base_/default_runtime.py']\n"
        f"model = dict({', '.join(model)})\n"
        "test_pipeline = [dict(type='LoadImageFromFile'),\n"
        "                 dict(type='Resize', scale=(168, 168), keep_ratio=False),\n"
        "                 dict(type='PackSAM3Inputs')]\n"
        "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    return str(path)


@pytest.fixture(scope='module')
def tiny_cfg(tmp_path_factory, bpe_path):
    return write_tiny_infer_config(tmp_path_factory.mktemp('cfg') / 'tiny_infer.py', bpe_path)


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory, bpe_path):
    """Well-scaled random weights (not the default init, whose box deltas start at zero)."""
    from mmsam3.testing.random_weights import randomize_parameters
    from mmsam3.testing.tiny_model import build_tiny_sam3

    model = build_tiny_sam3(bpe_path)
    randomize_parameters(model, seed=0)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny_random.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def draw_image(path, size=(100, 150), seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((*size, 3)) * 60).astype(np.uint8)
    img[20:60, 30:90] = (0, 0, 255)
    cv2.circle(img, (115, 70), 18, (0, 220, 0), -1)
    cv2.imwrite(str(path), img)
    return str(path)


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    return draw_image(tmp_path_factory.mktemp('img') / 'shapes.png')
