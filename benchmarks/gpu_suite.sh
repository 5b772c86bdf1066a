#!/usr/bin/env bash
# The one command to run on a lent GPU machine: build with CUDA, run the cuda
# tests, run every benchmark, and collect everything in one folder ($OUT or ./gpu_results).
# Usage: bash benchmarks/gpu_wheels.sh here, then on the device: bash benchmarks/gpu_suite.sh [--quick]
# (carry .whl). One call of about 8 minutes with --quick.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
quick="${1:-}"
log() { echo "== $*" | tee -a "$out/suite.log"; }

log "$(date -u) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
# The GPU image has torch (CUDA), triton, pybind11, ninja, h5py, safetensors, pillow, tqdm and scikit-image;
# trimesh (and PyMCubes) travel as wheels: run benchmarks/gpu_wheels.sh here first and carry .whl.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
log "build"
NIS_FAST_CUDA=1 pip install -q --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
python -m nis_fast.cli info | tee "$out/info.json"

log "tests (cuda marker and the rest)"
python -m pytest -q -m cuda tests 2>&1 | tail -30 | tee "$out/tests_cuda.txt"
python -m pytest -q -x tests -m "not cuda" 2>&1 | tail -15 | tee "$out/tests_all.txt"

log "kernel checks (compile + run every Triton kernel against its reference)"
python benchmarks/gpu_check_kernels.py 2>&1 | tail -30 | tee "$out/gpu_check_kernels.txt"

log "benchmarks"
for b in benchmarks/bench_*.py; do
  name=$(basename "$b" .py)
  log "$name"
  timeout 240 python "$b" $quick --out "$out/$name.json" 2>&1 | tail -40 | tee "$out/$name.txt"
done
log "done"
