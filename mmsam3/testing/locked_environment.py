"""What the locked set-up promises, and where an environment departs from it.

``requirements/lock.txt`` (full set-up) and ``lock-runtime.txt`` (``MMSAM3_NO_TESTS=1``) pin every
package ``tools/setup_env.sh`` installs; ``lock-mmdeploy.txt`` pins mmdeploy (installed
``--no-deps``) and ``requirements/mmcv.txt`` pins mmcv (local wheel or sdist, ``--no-deps``).
``MMSAM3_LOCK_DIR`` names another folder of lock files (``make lock`` tests a candidate that way).

Used by the drift tests and the README's version-table test; nothing in the product imports it.
"""
import os
import os.path as osp
import re
import subprocess
import sys
from importlib import metadata

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# The single conflict `pip check` may report: mmdeploy 1.3.1's metadata pins protobuf<=3.20.2,
# which onnx >= 1.16 cannot use; mmdeploy is installed with --no-deps and runs with the newer one.
ACCEPTED_PIP_CHECK = re.compile(
    r'^mmdeploy 1\.3\.1 has requirement protobuf<=3\.20\.2, but you have protobuf \S+\.?$')
_PIN = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)')


def normalise(name: str) -> str:
    """PEP 503 name: ``typing_extensions`` and ``Typing.Extensions`` -> ``typing-extensions``."""
    return re.sub(r'[-_.]+', '-', name).lower()


def lock_dir() -> str:
    return os.environ.get('MMSAM3_LOCK_DIR') or osp.join(REPO, 'requirements')


def read_pins(path: str) -> dict:
    """``{normalised name: version}`` of the ``name==version`` lines of a requirements file."""
    pins = {}
    with open(path) as f:
        for line in f:
            match = _PIN.match(line.split('#', 1)[0].strip())
            if match:
                pins[normalise(match.group(1))] = match.group(2)
    return pins


def locked_versions(directory: str = None, with_tests: bool = True) -> dict:
    """Every package the set-up installs and the version the lock gives it."""
    directory = directory or lock_dir()
    main = 'lock.txt' if with_tests else 'lock-runtime.txt'
    pins = read_pins(osp.join(directory, main))
    pins.update(read_pins(osp.join(directory, 'lock-mmdeploy.txt')))
    # mmcv is pinned by its input file (it is built or taken from a local wheel, not locked).
    pins.update({k: v for k, v in read_pins(osp.join(REPO, 'requirements', 'mmcv.txt')).items()
                 if k == 'mmcv'})
    return pins


def installed_version(name: str):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def drift(directory: str = None, with_tests: bool = True) -> list:
    """One line per locked package whose installed version differs (or that is missing)."""
    lines = []
    for name, want in sorted(locked_versions(directory, with_tests).items()):
        have = installed_version(name)
        # Local build tags (torch's "+cu130") are the same release as the lock's pin.
        if have is None:
            lines.append(f'{name}: locked {want}, not installed')
        elif have.split('+', 1)[0] != want.split('+', 1)[0]:
            lines.append(f'{name}: locked {want}, installed {have}')
    return lines


def pip_check_conflicts(python: str = None) -> list:
    """``pip check``'s reports, less the one documented mmdeploy protobuf pin."""
    proc = subprocess.run([python or sys.executable, '-m', 'pip', 'check',
                           '--disable-pip-version-check'], capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.strip() and not ACCEPTED_PIP_CHECK.match(line)
            and line.strip() != 'No broken requirements found.']
