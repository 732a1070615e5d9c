#!/usr/bin/env bash
# Build and time SAM 3's TensorRT engines ON THE DEVICE (Jetson, JetPack 6.2 / TensorRT 10.3),
# from a work dir exported on an x86 host (tools/deployment/deploy.py TENSORRT_CFG ... --ir-only,
# or mmdeploy's tools/deploy.py with the ONNX Runtime config of the same size): its
# sam3_graphs.json carries the optimisation profiles and the FP32 layer names. (With mmsam3 and
# mmdeploy on the device, mmdeploy's tools/deploy.py TENSORRT_CFG ... --device cuda:0 builds
# the engines itself.)
#
#   bash tools/deployment/build_trt_engines.sh WORK_DIR [--fp16] [--graphs "vision_tower ..."]
#
# Needs only trtexec (/usr/src/tensorrt/bin/trtexec on JetPack) and python3 (standard library).
# Writes WORK_DIR/<graph>.engine, WORK_DIR/<graph>.build.log and WORK_DIR/<graph>.timing.json,
# and prints trtexec's latency summary per graph. With --fp16, LayerNormalization and Softmax
# layers stay FP32 (--precisionConstraints=obey --layerPrecisions=...:fp32).
# Written for the device: no machine of this project has TensorRT, so it has not been run.
set -euo pipefail

WORK_DIR=${1:?usage: build_trt_engines.sh WORK_DIR [--fp16] [--graphs "..."]}
shift
FP16=0
# interactive_decoder: exported for a model with the interactive head only (skipped if absent).
GRAPHS="vision_tower text_tower prompt_decoder interactive_decoder"
while [ $# -gt 0 ]; do
  case "$1" in
    --fp16) FP16=1 ;;
    --graphs) GRAPHS="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}
[ -x "$TRTEXEC" ] || { echo "trtexec not found (set TRTEXEC=...)" >&2; exit 1; }
MANIFEST="$WORK_DIR/sam3_graphs.json"
[ -f "$MANIFEST" ] || { echo "$MANIFEST not found: export the graphs first (mmdeploy's tools/deploy.py or tools/deployment/deploy.py)" >&2; exit 1; }

# trtexec arguments of one graph from the manifest: shapes of the profile, FP32 layers.
trt_args() {
  python3 - "$MANIFEST" "$1" "$FP16" <<'PY'
import json, sys
manifest, graph, fp16 = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3] == '1'
entry = manifest['graphs'][graph]
prof = entry.get('trt_profile')
if prof is None:
    sys.exit(f'{graph}: no trt_profile in the manifest; export with a TensorRT deploy config')
def shapes(key):
    return ','.join(f"{name}:{'x'.join(str(d) for d in p[key])}" for name, p in prof.items())
args = [f'--minShapes={shapes("min_shape")}', f'--optShapes={shapes("opt_shape")}',
        f'--maxShapes={shapes("max_shape")}']
if fp16:
    args.append('--fp16')
    if entry.get('fp32_layers'):
        args += ['--precisionConstraints=obey',
                 '--layerPrecisions=' + ','.join(f'{n}:fp32' for n in entry['fp32_layers']),
                 '--layerOutputTypes=' + ','.join(f'{n}:fp32' for n in entry['fp32_layers'])]
print('\n'.join(args))
PY
}

for graph in $GRAPHS; do
  onnx="$WORK_DIR/$graph.onnx"
  [ -f "$onnx" ] || { echo "skip $graph: $onnx not found"; continue; }
  mapfile -t args < <(trt_args "$graph")
  echo "== $graph: building $WORK_DIR/$graph.engine (fp16=$FP16)"
  "$TRTEXEC" --onnx="$onnx" --saveEngine="$WORK_DIR/$graph.engine" "${args[@]}" \
    --memPoolSize=workspace:4096 --builderOptimizationLevel=3 \
    --exportTimes="$WORK_DIR/$graph.timing.json" --warmUp=500 --duration=10 \
    > "$WORK_DIR/$graph.build.log" 2>&1 || { echo "build failed, see $WORK_DIR/$graph.build.log" >&2; exit 1; }
  grep -E "Latency: min|GPU Compute Time: min|Throughput" "$WORK_DIR/$graph.build.log" || true
done
echo "engines in $WORK_DIR; check them against ONNX Runtime with:"
echo "  python tools/deployment/test.py DEPLOY_CFG MODEL_CFG --model $WORK_DIR --backend tensorrt --device cuda:0"
