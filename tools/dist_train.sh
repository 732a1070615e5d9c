#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG NGPUS [train.py args]
# NGPUS processes are started on this node. Without CUDA the processes use the gloo backend on
# the CPU (mmsam3's compatibility layer handles mmengine's GPU assumptions).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmdet.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NGPUS [tools/train.py arguments]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}
[ -x "$DIR/../.venv/bin/python" ] && [ "${PYTHON}" = python ] && PYTHON="$DIR/../.venv/bin/python"

exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$GPUS" --master_port="$PORT" \
  "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
