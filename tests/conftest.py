"""Shared pytest set-up for mmsam3.

- ``@pytest.mark.requires_official``: the test needs Meta's reference ``sam3`` package (parity
  checks). Without it the test is skipped with the reason; with it the package is first patched
  for CPU by :mod:`mmsam3.testing.official_sam3`. ``MMSAM3_WITHOUT_OFFICIAL=1`` hides the package
  (``import sam3`` fails), to run the suite as on a machine that lacks it.
- ``bpe_path`` gives the CLIP BPE vocabulary from ``../shared/data`` or skips.
- ``tools/analysis_tools`` and ``tools`` are importable, so tests can call the scripts' ``main``.
"""
import importlib.abc
import os
import os.path as osp
import sys

import pytest
import torch

from mmsam3.testing import official_sam3

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for sub in ('tools/analysis_tools', 'tools'):
    path = osp.join(REPO_ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)

# Two cores are shared by the whole suite; more threads only add contention.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class _HideOfficial(importlib.abc.MetaPathFinder):
    """Makes ``import sam3`` (and its submodules) fail, as where the package is absent."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == 'sam3' or fullname.startswith('sam3.'):
            raise ModuleNotFoundError(f'No module named {fullname!r} (MMSAM3_WITHOUT_OFFICIAL=1)',
                                      name=fullname)
        return None


if os.environ.get('MMSAM3_WITHOUT_OFFICIAL', '') not in ('', '0'):
    sys.meta_path.insert(0, _HideOfficial())


def require_official():
    """Skip the running test unless Meta's ``sam3`` imports; patch it for CPU when it does."""
    ok, reason = official_sam3.official_available()
    if not ok:
        pytest.skip(reason)
    official_sam3.patch_official_for_cpu()


def pytest_collection_modifyitems(config, items):
    # Tests that still take the `official_sam3_pkg` fixture count as marked too, so
    # `-m requires_official` selects every parity test.
    for item in items:
        if 'official_sam3_pkg' in getattr(item, 'fixturenames', ()):
            item.add_marker('requires_official')


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture runs, so fixtures of marked tests may build official modules.
    if item.get_closest_marker('requires_official') is not None:
        require_official()


@pytest.fixture(scope='session')
def official_sam3_pkg():
    """The ``sam3`` module for tests that need the object itself (implies the marker)."""
    require_official()
    import sam3
    return sam3


@pytest.fixture(scope='session')
def bpe_path():
    if not osp.isfile(official_sam3.BPE_PATH):
        pytest.skip(f'CLIP BPE vocabulary not found at {official_sam3.BPE_PATH} '
                    '(expected in ../shared/data; set MMSAM3_BPE_PATH to use another copy)')
    return official_sam3.BPE_PATH
