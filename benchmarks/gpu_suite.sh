#!/usr/bin/env bash
# The one command to run on a lent GPU machine: build with CUDA, run the cuda tests, check every
# Triton kernel, run every benchmark on the GPU, and collect it all in $OUT (or ./gpu_results).
#   here:  bash benchmarks/gpu_wheels.sh    (wheels the GPU image lacks, and a copy of ../shared, to carry)
#   there: bash benchmarks/gpu_suite.sh [--quick] [BUDGET_S]    (carry .whl and shared)
# GPU_SUITE_ONLY='cuda tests|bench_sdf' (a bash regex on the step names) runs only those steps.
# Steps run in order of what they tell us and each gets at most what is left of BUDGET_S (default
# 560 s), so a short lease still brings back the build, the cuda tests and the SDF figures. Every
# step's output goes to suite.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
# The benchmarks' JSON files are packed into one archive when the suite ends (the device tool brings
# back 8 files at most): $out holds suite.log and results.tar.gz.
json=$(mktemp -d)
trap 'tar -czf "$out/results.tar.gz" -C "$json" . 2>/dev/null' EXIT
quick="${1:-}"
budget="${2:-560}"
log() { echo "== [$SECONDS s] $*" | tee -a "$out/suite.log"; }
# step NAME MAX_S CMD...: run CMD with a timeout of min(MAX_S, what is left), output to the log.
step() {
  local name=$1 max=$2 left=$((budget - SECONDS))
  shift 2
  if [ -n "${GPU_SUITE_ONLY:-}" ] && ! [[ $name =~ $GPU_SUITE_ONLY ]]; then return; fi
  if [ "$left" -lt 15 ]; then log "$name: skipped (budget spent)"; return; fi
  log "$name"
  timeout $((max < left ? max : left)) "$@" 2>&1 | tee -a "$out/suite.log" | tail -n 25
  log "$name: exit ${PIPESTATUS[0]}"
}

log "$(date -u) on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
# The GPU image has torch (CUDA), triton, pybind11, ninja, h5py, safetensors, pillow, tqdm and
# scikit-image; trimesh and PyMCubes travel as wheels. The repo's shared/ (a copy of ../shared made
# by gpu_wheels.sh) stands in for the ../shared that does not travel.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d ../shared/meshes ] || { [ -d shared/meshes ] && ln -sfn "$PWD/shared" ../shared; }

log "build (sm_90 only: this machine's)"
if ! NIS_FAST_CUDA=1 NIS_FAST_CUDA_ARCHS=90 python3 -m pip install -q --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log" | tee -a "$out/suite.log"
  exit 1
fi
rm -f "$out/build.log"
python3 -m nis_fast.cli info 2>&1 | tee -a "$out/suite.log"

step "cuda tests" 150 python3 -m pytest -q -rfE --tb=short -m cuda tests
step "bench_sdf (CUDA engine vs the CPU engine)" 90 python3 benchmarks/bench_sdf.py --device cuda --threads "$(nproc)" \
  --out "$json/bench_sdf_cuda.json"
step "bench_rays (CUDA engine vs the CPU engine and Open3D)" 60 python3 benchmarks/bench_rays.py --device cuda \
  --threads "$(nproc)" --out "$json/bench_rays.json"
step "Triton kernels compiled and checked against torch autograd" 120 python3 benchmarks/gpu_check_kernels.py \
  --out "$json/gpu_check_kernels.json"
step "bench_mlp" 120 python3 benchmarks/bench_mlp.py --batches 2048,1048576 --cpu-batches 2048 \
  --cpu-threads "1,$(nproc)" --out "$json/bench_mlp.json"
step "bench_fit_accuracy (paper recipe, one mesh)" 90 python3 benchmarks/bench_fit_accuracy.py --recipe paper \
  --meshes 32770 --out "$json/bench_fit_accuracy.json"
step "bench_fit_many (8 shapes, fast recipe)" 90 python3 benchmarks/bench_fit_many.py --out "$json/bench_fit_many.json"
step "bench_collection (fit-many over ../shared/meshes, paper recipe, vs a plain PyTorch loop)" 90 \
  python3 benchmarks/bench_collection.py --recipe paper --plain-shapes 2 --plain-epochs 3 \
  --out "$json/bench_collection.json"
step "bench_render" 60 python3 benchmarks/bench_render.py $quick --out "$json/bench_render.json"
step "bench_mesh" 90 python3 benchmarks/bench_mesh.py $quick --out "$json/bench_mesh.json"
# The rest of the tests with the GPU present: the kernel tests run compiled on CUDA (not interpreted), and
# paths that pick CUDA by default take it.
step "the other tests" 150 python3 -m pytest -q -rfE --tb=short -m "not cuda" \
  -n 8 tests
step "tune_mlp_train (launch configurations of the training kernel)" 120 python3 benchmarks/tune_mlp_train.py \
  --out "$json/tune_mlp_train.json"
log "done"
