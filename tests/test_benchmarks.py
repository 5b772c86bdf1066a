"""The benchmark scripts that gpu_suite.sh runs on a lent GPU, run here in their --quick form on the CPU, so that a
broken script is found in CI, not in the GPU's few minutes. Each must finish and write its JSON."""
import json
import subprocess
import sys

import pytest

from tests.conftest import MESHES, REPO


@pytest.mark.parametrize("script, args", [
    ("bench_mlp.py", ["--no-compile", "--cpu-batches", "2048", "--cpu-threads", "1,2"]),
    ("bench_collection.py", ["--plain-shapes", "1", "--plain-epochs", "1"]),
])
def test_benchmark_runs_in_quick_mode(tmp_path, script, args):
    if script == "bench_collection.py" and not MESHES.is_dir():
        pytest.skip(f"{MESHES} not found")
    out = tmp_path / "result.json"
    child = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(out), *args],
                           capture_output=True, text=True, timeout=600, cwd=REPO)
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-3000:]
    assert json.loads(out.read_text())["rows"]
