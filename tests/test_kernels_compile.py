"""The Triton kernels lower through the real GPU compiler (Triton front end + the ptxas bundled with the
triton wheel), with no GPU: the interpreter used by the other kernel tests accepts programs that the
compiler rejects. One precision (fp16, the fastest to compile) for sm_90; the script checks them all."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
REPO = Path(__file__).resolve().parents[1]
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


@pytest.mark.skipif(not PTXAS.exists(), reason=f"this triton wheel has no bundled ptxas ({PTXAS})")
def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")  # compile for real, not from a cache
    out = tmp_path / "stats.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compile_check_kernels.py"), "--arch", "90",
                           "--precisions", "fp16", "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["kernel"] for r in rows} == {"mlp_forward", "mlp_train", "mlp_train atomic", "mlp_input_grad", "adam",
                                           "adam (alpha per network)"}
    for r in rows:
        assert "error" not in r and r["reg"] > 0, r
        if not r["kernel"].startswith("adam"):
            assert r["tensor_cores"] != "none", f"{r['kernel']} fp16 should use tensor cores: {r}"
