"""Refresh the locked environment (``make lock``): resolve, build, test, and only then replace.

The lock is what ``tools/setup_env.sh`` installs, so a set-up today and one a month from now give
the same environment. Moving it is a decision made with this command:

1. ``uv pip compile`` resolves ``requirements/*.txt`` (inputs) under ``requirements/constraints.txt``
   into three hash-pinned files in a scratch folder:

   - ``lock.txt``: every package of the full set-up (build tools, mmcv's runtime needs, runtime,
     deploy, demo and test extras), one resolution, so no later pip call can move an earlier one;
   - ``lock-runtime.txt``: the same versions without the test extras (``MMSAM3_NO_TESTS=1``);
   - ``lock-mmdeploy.txt``: mmdeploy alone, installed ``--no-deps`` (its ``protobuf<=3.20.2`` pin
     cannot be met beside current onnx).

   mmcv itself stays out of the lock files: it comes from the local wheel with compiled ops (or is
   built from its sdist) and is installed ``--no-deps``; ``requirements/mmcv.txt`` pins it.
2. ``tools/setup_env.sh`` builds a scratch virtual environment from those files.
3. The default test suite runs there (``pytest -q``), with ``MMSAM3_LOCK_DIR`` naming the candidate
   so the drift test compares against it.
4. Only when the suite passes are the files copied over ``requirements/lock*.txt``; what moved is
   printed (old -> new). Otherwise the lock stays as it was and the suite's tail is shown.

Usage::

    python tools/misc/lock_requirements.py              # newest versions allowed (= make lock)
    python tools/misc/lock_requirements.py --no-upgrade  # keep current pins, resolve what changed
                                                         # in requirements/*.txt

uv is used (not pip-compile) because it resolves for a named Python and platform without installing
anything, writes every file's sha256 of each pinned version, and does not depend on the internals of
the pip release it runs beside (pip-tools breaks with new pip releases).
"""
import argparse
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REQ = osp.join(REPO, 'requirements')
LOCK_FILES = ('lock.txt', 'lock-runtime.txt', 'lock-mmdeploy.txt')
FULL_INPUTS = ('build.txt', 'mmcv.txt', 'runtime.txt', 'deploy.txt', 'demo.txt', 'tests.txt')
RUNTIME_INPUTS = ('build.txt', 'mmcv.txt', 'runtime.txt', 'deploy.txt', 'demo.txt')
TARGET = ('--python-version', '3.11', '--python-platform', 'x86_64-manylinux_2_28')
PIN = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)')


def read_pins(path):
    """``{normalised name: version}`` of a hash-pinned requirements file."""
    pins = {}
    if not osp.exists(path):
        return pins
    with open(path) as f:
        for line in f:
            match = PIN.match(line)
            if match:
                pins[normalise(match.group(1))] = match.group(2)
    return pins


def normalise(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def find_uv():
    for candidate in (osp.join(REPO, '.venv', 'bin', 'uv'), shutil.which('uv')):
        if candidate and osp.exists(candidate):
            return candidate
    sys.exit('lock_requirements: uv not found; run `bash tools/setup_env.sh` first (the lock '
             'installs it into .venv) or `pip install uv`')


def compile_locks(uv, out_dir, upgrade, wheels):
    """Write the three lock files into ``out_dir``."""
    rel = lambda name: osp.join('requirements', name)  # noqa: E731 (headers name repo paths)
    common = [uv, 'pip', 'compile', '--quiet', *TARGET, '--generate-hashes',
              '--custom-compile-command', 'make lock', '--find-links', wheels,
              '--no-emit-package', 'mmcv']
    current = osp.join(REQ, 'lock.txt')
    full = osp.join(out_dir, 'lock.txt')
    cmd = common + ['-c', rel('constraints.txt')]
    if not upgrade and osp.exists(current):
        # Existing pins are preferred (uv reads the output file as its starting point).
        shutil.copyfile(current, full)
    else:
        cmd.append('--upgrade')
    run(cmd + [rel(n) for n in FULL_INPUTS] + ['-o', full])
    # The runtime-only lock is a subset of the full resolution: the full lock constrains it.
    run(common + ['-c', rel('constraints.txt'), '-c', full] + [rel(n) for n in RUNTIME_INPUTS]
        + ['-o', osp.join(out_dir, 'lock-runtime.txt')])
    run([uv, 'pip', 'compile', '--quiet', *TARGET, '--generate-hashes', '--no-deps',
         '--custom-compile-command', 'make lock', rel('mmdeploy.txt'),
         '-o', osp.join(out_dir, 'lock-mmdeploy.txt')])
    for name in LOCK_FILES:
        # uv names its output file in the "via" lines of the runtime lock (-c): keep it relative.
        path = osp.join(out_dir, name)
        with open(path) as f:
            text = f.read().replace(full, rel('lock.txt'))
        with open(path, 'w') as f:
            f.write(text)


def run(cmd, **kwargs):
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, **kwargs)


def moved(old_dir, new_dir):
    """Lines 'name: old -> new' (and added / removed) across the lock files."""
    lines = []
    for name in LOCK_FILES:
        old, new = read_pins(osp.join(old_dir, name)), read_pins(osp.join(new_dir, name))
        for pkg in sorted(set(old) | set(new)):
            if old.get(pkg) != new.get(pkg):
                lines.append(f'  {name}: {pkg}: {old.get(pkg, "(absent)")} -> '
                             f'{new.get(pkg, "(absent)")}')
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--no-upgrade', action='store_true',
                        help='keep the current pins; only resolve what requirements/*.txt changed')
    parser.add_argument('--scratch', default=None,
                        help='folder for the candidate lock and scratch environment '
                        '(default: a new temporary folder, removed afterwards)')
    parser.add_argument('--keep-scratch', action='store_true',
                        help='leave the scratch environment in place (for a look after a failure)')
    args = parser.parse_args()

    wheels = os.environ.get('MMSAM3_WHEELS',
                            osp.join(REPO, '..', 'shared', 'wheels', 'torch2.14.1-cp311'))
    if not any(n.startswith('mmcv-2.1.0-') for n in os.listdir(wheels) if osp.isdir(wheels)):
        sys.exit(f'lock_requirements: no mmcv 2.1.0 wheel in {wheels}: the resolver reads mmcv\'s '
                 'dependencies from it (set MMSAM3_WHEELS to a folder holding one)')
    scratch = args.scratch or tempfile.mkdtemp(prefix='mmsam3-lock-')
    cand = osp.join(scratch, 'requirements')
    os.makedirs(cand, exist_ok=True)
    start = time.time()
    compile_locks(find_uv(), cand, upgrade=not args.no_upgrade, wheels=wheels)
    changes = moved(REQ, cand)
    print(f'[lock] resolved in {time.time() - start:.0f} s; what moved against the current lock:')
    print('\n'.join(changes) if changes else '  nothing')

    env = dict(os.environ, VENV=osp.join(scratch, 'venv'), MMSAM3_LOCK_DIR=cand)
    start = time.time()
    print('[lock] building the scratch environment from the candidate lock', flush=True)
    setup = subprocess.run(['bash', osp.join('tools', 'setup_env.sh')], cwd=REPO, env=env)
    suite = None
    if setup.returncode == 0:
        print(f'[lock] environment built in {time.time() - start:.0f} s; running the default '
              'suite in it', flush=True)
        start = time.time()
        log = osp.join(scratch, 'pytest.log')
        with open(log, 'w') as f:
            suite = subprocess.run([osp.join(scratch, 'venv', 'bin', 'python'), '-m', 'pytest',
                                    '-q'], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
        with open(log) as f:
            tail = f.read().splitlines()[-40:]
        print('\n'.join(tail))
        print(f'[lock] suite took {time.time() - start:.0f} s (exit {suite.returncode})')
    ok = setup.returncode == 0 and suite is not None and suite.returncode == 0
    if ok:
        for name in LOCK_FILES:
            shutil.copyfile(osp.join(cand, name), osp.join(REQ, name))
        print('[lock] suite passed: requirements/lock*.txt rewritten. What moved:')
        print('\n'.join(changes) if changes else '  nothing')
        print('[lock] run `bash tools/setup_env.sh` to move .venv onto it, and update the '
              'README version table (tests/test_packaging/test_locked_environment.py checks it)')
    else:
        stage = 'set-up' if setup.returncode else 'test suite'
        print(f'[lock] the {stage} failed in the scratch environment: the lock is left as it '
              f'was. Candidate files: {cand}')
    if not args.keep_scratch and not args.scratch and ok:
        shutil.rmtree(scratch, ignore_errors=True)
    elif not ok:
        print(f'[lock] scratch folder kept for a look: {scratch}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
