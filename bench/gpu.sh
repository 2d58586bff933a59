#!/usr/bin/env bash
# GPU benchmark of the `paper` preset: videos/s (5 clips x 18 crops) in fp32, fp16 and bf16 with PyTorch
# on CUDA, the decode vs inference share of a video's time, and ONNX Runtime's CUDA provider where
# onnxruntime-gpu is installed. Ends within 8 minutes (a 7-minute step budget plus a hard timeout).
#
#   bench/gpu.sh                       # on the GPU machine, from anywhere in the repository
#   bench/gpu.sh --preset tiny --iters 2 --out /tmp/gpu.json   # CPU check of the script itself
#
# Needs python3 with torch and numpy; PyAV (`av`) is used when importable, OpenCV otherwise. The
# project need not be installed: the `fstcn` namespace is linked together from the repository's folders
# (scripts/typecheck-tree, the mapping of pyproject.toml) into a temporary folder put first on
# PYTHONPATH. Output: JSON (--out, default gpu-bench.json, or $OUT/gpu-bench.json when OUT is set) and a
# summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
import_tree="$(mktemp -d)"
trap 'rm -rf "$import_tree"' EXIT
scripts/typecheck-tree "$import_tree"
export PYTHONPATH="$import_tree${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && ! "$PYTHON" -c "import torch" 2>/dev/null; then PYTHON=.venv/bin/python; fi
default_out="gpu-bench.json"
if [ -n "${OUT:-}" ]; then default_out="$OUT/gpu-bench.json"; fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout --signal=TERM --kill-after=10 470 "$PYTHON" -m fstcn.bench.gpu_bench --out "$default_out" "$@"
