#!/usr/bin/env bash
# Fetch, on a machine with network, the wheels the GPU image lacks (trimesh for mesh input, PyMCubes a
# meshing peer) into .whl/, and copy ../shared (the test meshes and the paper's weights, which do not
# travel with the repo) into ./shared; both are git-ignored, for the device tool to carry:
#   bash benchmarks/gpu_wheels.sh   then   run(command="bash benchmarks/gpu_suite.sh --quick", carry=[".whl", "shared"])
set -euo pipefail
cd "$(dirname "$0")/.."
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl \
  trimesh==5.2.0 pymcubes==0.1.6
ls -la .whl
rm -rf shared && mkdir -p shared
cp -r ../shared/meshes ../shared/paper_weights shared/
du -sh .whl shared
