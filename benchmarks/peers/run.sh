#!/usr/bin/env bash
# Peer benchmark: shareformer vs ONNX Runtime (onnxruntime-node) vs PyTorch, one command.
#   benchmarks/peers/run.sh [--quick] [harness options]   (see harness.py --help)
# Writes benchmarks/peers/results/<date>/{results.json,table.md,gflops.svg,gflops.png}.
set -euo pipefail
cd "$(dirname "$0")"

# Debian's python3 has torch 1.13 and matplotlib; a `python3` earlier on PATH may not.
PY=${PEERS_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import torch, matplotlib' 2>/dev/null; then
  echo "run.sh: $PY lacks torch or matplotlib (apt-get install python3-torch python3-matplotlib)" >&2
  exit 1
fi

# onnxruntime-node: its CPU binaries ship in the npm package; its postinstall would fetch
# optional CUDA binaries from outside the npm registry, so it is told to skip that.
if command -v npm >/dev/null; then
  if [ ! -d node_modules/onnxruntime-node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
  fi
else
  echo "run.sh: npm not found; ONNX Runtime will be skipped" >&2
fi

# OPENBLAS_CORETYPE (set to Haswell on this machine) keeps OpenBLAS, PyTorch's BLAS here, off its
# AVX-512 kernels; OPENBLAS_L2_SIZE goes with it. Unset for this command only.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" harness.py "$@"
# results/README.md: one row per kept run, with the targets each met.
"$PY" report.py --index results
