"""The environment is the locked one: versions, pip's own consistency check, the README's table.

A set-up made today and one made next month install ``requirements/lock*.txt``; these tests fail,
naming the package, when what is installed has moved away from the lock (a hand-run ``pip
install``, an old ``.venv``, a lock edited without ``make lock``).
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from mmsam3.testing import locked_environment as locked

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
with_tests = locked.installed_version('sam3') is not None  # MMSAM3_NO_TESTS=1 set-ups lack it


def test_installed_versions_match_the_lock():
    pins = locked.locked_versions(with_tests=with_tests)
    assert {'torch', 'mmcv', 'mmdet', 'mmengine', 'mmdeploy', 'onnx', 'onnxruntime', 'pip',
            'setuptools'} <= set(pins)
    differences = locked.drift(with_tests=with_tests)
    assert not differences, (
        f'installed packages differ from the lock in {locked.lock_dir()}:\n  '
        + '\n  '.join(differences) + '\nrun `bash tools/setup_env.sh` (or `make lock` to move '
        'the lock on purpose)')


def test_pip_check_reports_only_the_mmdeploy_protobuf_pin():
    conflicts = locked.pip_check_conflicts()
    assert not conflicts, 'pip check reports conflicts:\n' + '\n'.join(conflicts)


def test_pip_check_filter_keeps_other_conflicts():
    accepted = ('mmdeploy 1.3.1 has requirement protobuf<=3.20.2, but you have protobuf 7.36.2.')
    assert locked.ACCEPTED_PIP_CHECK.match(accepted)
    for other in ('sam3 0.1.4 has requirement huggingface-hub<2.0,>=0.30.0, but you have '
                  'huggingface-hub 2.4.0.',
                  'mmdeploy 1.3.1 has requirement onnx>=1.13.0, but you have onnx 1.0.',
                  'mmdeploy 1.3.1 requires aenum, which is not installed.'):
        assert not locked.ACCEPTED_PIP_CHECK.match(other), other


def test_drift_test_fails_naming_a_hand_edited_pin(tmp_path):
    """A lock whose torch pin was changed by hand makes the drift test above fail, naming torch."""
    copy = tmp_path / 'requirements'
    shutil.copytree(locked.lock_dir(), copy)
    lock = copy / ('lock.txt' if with_tests else 'lock-runtime.txt')
    text = lock.read_text()
    edited = re.sub(r'^torch==\S+', 'torch==2.0.0', text, count=1, flags=re.M)
    assert edited != text
    lock.write_text(edited)
    env = dict(os.environ, MMSAM3_LOCK_DIR=str(copy))
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         f'{__file__}::test_installed_versions_match_the_lock'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert 'torch: locked 2.0.0, installed 2.14.1' in out, out
    # The unedited copy passes: the failure is the edit's, not the copy's.
    lock.write_text(text)
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         f'{__file__}::test_installed_versions_match_the_lock'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def readme_version_table():
    """``{package: version}`` from the README's table of tested versions."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    start = text.index('| package | version |')
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        names = [re.sub(r'\s*\(.*\)', '', n).strip() for n in cells[0].split(' / ')]
        versions = [v.strip() for v in cells[1].split(' / ')]
        assert len(names) == len(versions), line
        rows.update(zip(names, versions))
    return rows


def test_readme_version_table_is_the_lock():
    table = readme_version_table()
    pins = locked.locked_versions(with_tests=True)
    assert len(table) >= 10
    wrong = {name: (version, pins.get(locked.normalise(name)))
             for name, version in table.items() if pins.get(locked.normalise(name)) != version}
    assert not wrong, f'README version table disagrees with the lock (README, lock): {wrong}'


@pytest.mark.parametrize('name', ['lock.txt', 'lock-runtime.txt', 'lock-mmdeploy.txt'])
def test_every_locked_package_carries_a_hash(name):
    with open(osp.join(REPO, 'requirements', name)) as f:
        blocks = re.split(r'\n(?=[A-Za-z0-9])', f.read())
    pinned = [b for b in blocks if re.match(r'[A-Za-z0-9][A-Za-z0-9._-]*==', b)]
    assert pinned
    for block in pinned:
        assert '--hash=sha256:' in block, block.splitlines()[0]


def test_runtime_lock_is_the_full_lock_less_test_extras():
    full = locked.read_pins(osp.join(REPO, 'requirements', 'lock.txt'))
    runtime = locked.read_pins(osp.join(REPO, 'requirements', 'lock-runtime.txt'))
    assert set(runtime) < set(full) and 'sam3' not in runtime and 'pytest' not in runtime
    assert {k: full[k] for k in runtime} == runtime
