#!/usr/bin/env bash
# One-command set-up of mmsam3's environment: creates .venv in the repo root and installs the
# locked stack (requirements/lock.txt: every package pinned to one version, with its sha256).
# Re-running it on a ready environment only checks a stamp and returns.
#
#   bash tools/setup_env.sh                      # full stack incl. test extras (lock.txt)
#   MMSAM3_NO_TESTS=1 bash tools/setup_env.sh    # without the test extras (lock-runtime.txt)
#   VENV=DIR MMSAM3_LOCK_DIR=DIR bash tools/setup_env.sh   # another folder / candidate lock
#                                                # (what `make lock` does in its scratch folder)
#
# The lock is changed only by `make lock` (tools/misc/lock_requirements.py). Two packages are
# installed outside it, on purpose, each with --no-deps:
# - mmcv 2.1.0 from a local wheel with compiled ops when one matches (MMSAM3_WHEELS, default
#   ../shared/wheels/torch2.14.1-cp311); otherwise its PyPI sdist is built with ops, after switching
#   its C++ standard to C++20 as torch 2.14's headers require. PyPI has no mmcv 2.1.0 wheel.
# - mmdeploy 1.3.1 (requirements/lock-mmdeploy.txt, hash-pinned): its metadata pins
#   protobuf<=3.20.2, which current onnx cannot use; its code runs with the locked protobuf.
#   `pip check` reports that one pin; any other conflict stops this script.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$ROOT/.venv}
WHEELS=${MMSAM3_WHEELS:-$ROOT/../shared/wheels/torch2.14.1-cp311}
LOCK_DIR=${MMSAM3_LOCK_DIR:-$ROOT/requirements}
if [ "${MMSAM3_NO_TESTS:-0}" = "1" ]; then LOCK=$LOCK_DIR/lock-runtime.txt; else LOCK=$LOCK_DIR/lock.txt; fi
STAMP=$VENV/.mmsam3-setup-stamp
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

log() { printf '[setup_env] %s\n' "$*"; }
die() { printf '[setup_env] ERROR: %s\n' "$*" >&2; exit 1; }

for f in "$LOCK" "$LOCK_DIR/lock-mmdeploy.txt"; do
  [ -f "$f" ] || die "lock file $f is missing (generate it with 'make lock')"
done

# The stamp records everything that decides what gets installed.
want_stamp=$(cat tools/setup_env.sh requirements/*.txt "$LOCK" "$LOCK_DIR/lock-mmdeploy.txt" \
  setup.py setup.cfg 2>/dev/null | sha256sum | cut -d' ' -f1)-tests${MMSAM3_NO_TESTS:-0}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
   && "$VENV/bin/python" -c 'import mmsam3, mmdet, mmcv.ops, mmdeploy' >/dev/null 2>&1; then
  log "environment at $VENV is up to date (nothing to do)"
  exit 0
fi
rm -f "$STAMP"

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment at $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

# The build tools first (pip, setuptools, wheel), from their blocks of the lock: every sdist of the
# lock is then built with them, without build isolation, so no unpinned build dependency enters.
tools_req=$(mktemp)
trap 'rm -f "$tools_req"' EXIT
awk '/^[A-Za-z0-9]/ { keep = ($1 ~ /^(pip|setuptools|wheel)==/) } keep' "$LOCK" > "$tools_req"
[ "$(grep -c '==' "$tools_req")" = "3" ] || die "$LOCK does not pin pip, setuptools and wheel"
log "installing the locked build tools (pip, setuptools, wheel)"
$PIP install -q --require-hashes --no-deps -r "$tools_req"

log "installing the locked packages from ${LOCK#$ROOT/} (torch, OpenMMLab stack, onnx, demo$(
  [ "${MMSAM3_NO_TESTS:-0}" = "1" ] || printf ', test extras'))"
$PIP install -q --require-hashes --no-deps --no-build-isolation -r "$LOCK"

if ! "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1; then
  whl=$(ls "$WHEELS"/mmcv-2.1.0-cp311-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$whl" ]; then
    log "installing mmcv from prebuilt wheel $whl (--no-deps: its needs are in the lock)"
    $PIP install -q --no-deps "$whl"
  else
    log "no prebuilt mmcv wheel in $WHEELS: building mmcv 2.1.0 with ops from source (about 12 min on 2 cores)"
    build=$(mktemp -d)
    # mmcv's setup.py needs pkg_resources (setuptools < 81) and torch: no build isolation.
    $PIP download -q --no-deps --no-binary :all: --no-build-isolation mmcv==2.1.0 -d "$build"
    tar -xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
    # torch >= 2.14 headers refuse anything older than C++20.
    sed -i 's/-std=c++17/-std=c++20/g' "$build"/mmcv-2.1.0/setup.py
    (cd "$build"/mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=0 CFLAGS="-g0" CXXFLAGS="-g0" \
      MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP install -q --no-deps --no-build-isolation .)
    rm -rf "$build"
  fi
fi

log "installing mmdeploy 1.3.1 (--no-deps: it pins protobuf<=3.20.2, which current onnx cannot use)"
$PIP install -q --require-hashes --no-deps -r "$LOCK_DIR/lock-mmdeploy.txt"

if [ "${MMSAM3_NO_TESTS:-0}" != "1" ]; then
  # The browser test of tools/gradio_demo.py drives Debian's headless chromium.
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      log "installing chromium and chromium-driver with apt (browser test)"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium chromium-driver >/dev/null) \
        || log "apt could not install chromium: the browser test will skip, saying so"
    else
      log "chromium / chromedriver missing and apt-get not usable as this user: install them" \
          "(apt-get install chromium chromium-driver) or the browser test will skip"
    fi
  fi
fi

log "installing mmsam3 in editable mode"
$PIP install -q --no-deps --no-build-isolation -e .

# A conflict pip knows of is a broken environment: stop here rather than in the test suite.
# The one accepted report is mmdeploy's protobuf pin (see above).
check=$($PIP check 2>&1 || true)
conflicts=$(printf '%s\n' "$check" | grep -v -E '^mmdeploy 1\.3\.1 has requirement protobuf<=3\.20\.2, but you have protobuf ' \
  | grep -v -E '^No broken requirements found\.$' | grep -v '^$' || true)
if [ -n "$conflicts" ]; then
  printf '%s\n' "$conflicts" >&2
  die "pip check reports the conflicts above in $VENV: the lock (${LOCK#$ROOT/}) and what is installed disagree. Re-run 'make lock' to resolve them together, or remove $VENV and set up again."
fi

"$VENV/bin/python" - <<'PY'
import torch, mmcv, mmcv.ops, mmdet, mmengine, mmdeploy, onnx, onnxruntime, mmsam3
print('[setup_env] torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__,
      '| mmengine', mmengine.__version__, '| mmdeploy', mmdeploy.__version__,
      '| onnx', onnx.__version__, '| onnxruntime', onnxruntime.__version__)
PY
echo "$want_stamp" > "$STAMP"
log "done: activate with 'source .venv/bin/activate'"
