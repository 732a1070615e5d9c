#!/usr/bin/env bash
# One-command set-up of mmsam3's environment: creates .venv in the repo root and installs the
# whole stack (torch, mmcv with ops, mmdet, mmengine, mmdeploy, onnx, test extras).
# Re-running it on a ready environment only checks a stamp and returns.
#
#   bash tools/setup_env.sh            # full stack incl. test extras
#   MMSAM3_NO_TESTS=1 bash tools/setup_env.sh   # without the test-only extras
#
# mmcv 2.1.0 is taken from a local wheel directory when one matches (MMSAM3_WHEELS, default
# ../shared/wheels/torch2.14.1-cp311); otherwise its PyPI sdist is built with ops, after
# switching its C++ standard to C++20 as torch 2.14's headers require.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$ROOT/.venv}
WHEELS=${MMSAM3_WHEELS:-$ROOT/../shared/wheels/torch2.14.1-cp311}
STAMP=$VENV/.mmsam3-setup-stamp
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
PIPC="$PIP install -c $ROOT/requirements/constraints.txt"

log() { printf '[setup_env] %s\n' "$*"; }

# The stamp records everything that decides what gets installed.
want_stamp=$(cat tools/setup_env.sh requirements/*.txt setup.py setup.cfg 2>/dev/null \
  | sha256sum | cut -d' ' -f1)-tests${MMSAM3_NO_TESTS:-0}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
   && "$VENV/bin/python" -c 'import mmsam3, mmdet, mmcv.ops, mmdeploy' >/dev/null 2>&1; then
  log "environment at $VENV is up to date (nothing to do)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment at $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
$PIPC -q --upgrade pip wheel setuptools

log "installing torch / torchvision"
$PIPC -q torch torchvision

if ! "$VENV/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1; then
  # mmcv's own runtime deps first, so the wheel/sdist install below can use --no-deps.
  $PIPC -q addict numpy packaging Pillow pyyaml yapf opencv-python mmengine
  whl=$(ls "$WHEELS"/mmcv-2.1.0-cp311-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$whl" ]; then
    log "installing mmcv from prebuilt wheel $whl"
    $PIPC -q --no-deps "$whl"
  else
    log "no prebuilt mmcv wheel in $WHEELS: building mmcv 2.1.0 with ops from source (about 12 min on 2 cores)"
    build=$(mktemp -d)
    # mmcv's setup.py needs pkg_resources (setuptools < 81) and torch: no build isolation.
    $PIP download -q --no-deps --no-binary :all: --no-build-isolation mmcv==2.1.0 -d "$build"
    tar -xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
    # torch >= 2.14 headers refuse anything older than C++20.
    sed -i 's/-std=c++17/-std=c++20/g' "$build"/mmcv-2.1.0/setup.py
    (cd "$build"/mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=0 CFLAGS="-g0" CXXFLAGS="-g0" \
      MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIPC -q --no-deps --no-build-isolation .)
    rm -rf "$build"
  fi
fi

log "installing OpenMMLab stack and runtime requirements"
$PIPC -q -r requirements/runtime.txt -r requirements/deploy.txt
# mmdeploy pins protobuf<=3.20.2 which current onnx cannot use; its code runs with the newer one.
$PIPC -q --no-deps -r requirements/mmdeploy.txt

log "installing the browser demo's requirements (gradio, selenium)"
$PIPC -q -r requirements/demo.txt

if [ "${MMSAM3_NO_TESTS:-0}" != "1" ]; then
  log "installing test extras (incl. the official sam3 reference package)"
  $PIPC -q -r requirements/tests.txt
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
$PIPC -q --no-deps --no-build-isolation -e .

"$VENV/bin/python" - <<'PY'
import torch, mmcv, mmcv.ops, mmdet, mmengine, mmdeploy, onnx, onnxruntime, mmsam3
print('[setup_env] torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__,
      '| mmengine', mmengine.__version__, '| mmdeploy', mmdeploy.__version__,
      '| onnx', onnx.__version__, '| onnxruntime', onnxruntime.__version__)
PY
echo "$want_stamp" > "$STAMP"
log "done: activate with 'source .venv/bin/activate'"
