"""The CLI and backend_info report the build truthfully."""
import json
import subprocess
import sys

import pytest

import nis_fast as nf
from nis_fast import _backend
from nis_fast.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nis_fast.cli", *args], capture_output=True, text=True, timeout=120)


def test_backend_info_is_truthful():
    info = nf.backend_info()
    status = _backend.cuda_status()
    assert info["native"]["cuda_built"] == status["built"]
    assert info["cpu_threads"] >= 1
    assert "-fopenmp" in info["native"]["cxx_flags"]
    if not status["available"]:
        assert info["cuda"].startswith("not available (") and status["reason"] in info["cuda"]
    if status["built"]:
        assert "sm_" in info["native"]["cuda_archs"]
    else:
        assert info["native"]["cuda_not_built_because"]


def test_info_command_prints_backend_info_as_json():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["native"] == nf.backend_info()["native"]


@pytest.mark.parametrize("command", ["info", "demo"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: nis-fast" in capsys.readouterr().out


def test_demo_reports_the_bundled_mesh(capsys, tmp_path):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torus_knot.ply" in out and "7680 faces" in out and '"watertight": true' in out


def test_bad_mesh_is_one_clear_error(capsys):
    assert main(["demo", "--mesh", "/no/such/mesh.obj"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cuda_sources_were_compiled_when_nvcc_is_present():
    import os
    import shutil

    nvcc = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
    if not nvcc or os.environ.get("NIS_FAST_CUDA") == "0":
        pytest.skip("no nvcc here: the build skips CUDA by design")
    assert nf.backend_info()["native"]["cuda_built"], "nvcc is present but the CUDA backend was not built"
