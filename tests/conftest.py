"""Shared pytest fixtures for mmsam3.

``official_sam3`` gives tests Meta's reference package (patched for CPU by
``tools/analysis/official_sam3.py``) or skips with the reason; ``bpe_path`` gives the CLIP BPE
vocabulary from ``../shared/data`` or skips.
"""
import os
import os.path as osp
import sys

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for sub in ('tools/analysis', 'tools'):
    path = osp.join(REPO_ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)

import official_sam3  # noqa: E402

# Two cores are shared by the whole suite; more threads only add contention.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope='session')
def official_sam3_pkg():
    ok, reason = official_sam3.official_available()
    if not ok:
        pytest.skip(reason)
    official_sam3.patch_official_for_cpu()
    import sam3
    return sam3


@pytest.fixture(scope='session')
def bpe_path():
    if not osp.isfile(official_sam3.BPE_PATH):
        pytest.skip(f'CLIP BPE vocabulary not found at {official_sam3.BPE_PATH} '
                    '(expected in ../shared/data; set MMSAM3_BPE_PATH to use another copy)')
    return official_sam3.BPE_PATH
