"""The package's layers hold (README "Layout"): application -> ops -> core, one way; kernels import
only nis_fast.core; no import cycles. The rules are import-linter contracts in pyproject.toml; these
tests run them, and show that they catch a broken rule. And the network's layout has one definition
(nis_fast.core.layout): the C++ header's, which the decoders evaluate, is compared with it."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from nis_fast.core.layout import LAYER_SIZES, N_PARAMS, OFFSETS
from nis_fast.ops.native import native

try:
    import importlinter  # noqa: F401
except ImportError:
    importlinter = None
needs_import_linter = pytest.mark.skipif(importlinter is None,
                                         reason="import-linter is a test dependency (pip install -e '.[test]')")

LINT = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"


def _lint(root):
    """Run the contracts of root/pyproject.toml over the sources under root; (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


def _copy_sources(tmp_path):
    for folder in ("nis_fast", "kernels"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.so", "__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@needs_import_linter
def test_the_import_contracts_hold():
    code, out = _lint(REPO)
    assert code == 0, out
    assert "3 kept, 0 broken" in out


@needs_import_linter
@pytest.mark.parametrize("module, line, broken", [
    ("nis_fast/io.py", "from .model import NeuralSDF", "one way"),             # io <-> model: a cycle, and upwards
    ("nis_fast/core/layout.py", "from ..ops import native", "one way"),          # core reaching up
    ("kernels/adam.py", "from nis_fast.fit import FitConfig", "only nis_fast.core"),  # kernels -> application
    ("nis_fast/ops/triangle.py", "from .mesh_query import Query", "cycles"),     # a cycle inside ops
])
def test_a_broken_rule_is_caught(tmp_path, module, line, broken):
    root = _copy_sources(tmp_path)
    if module == "nis_fast/ops/triangle.py":  # make the cycle: mesh_query already imports native; close a loop
        (root / "nis_fast/ops/mesh_query.py").write_text((root / "nis_fast/ops/mesh_query.py").read_text()
                                                         + "\nfrom .triangle import closest_point_on_triangles\n")
    path = root / module
    path.write_text(path.read_text() + f"\n{line}\n")
    code, out = _lint(root)
    assert code != 0, out
    assert any(broken in l and "BROKEN" in l for l in out.splitlines()), out


def test_the_native_network_layout_is_core_layout():
    """mlp.h's per-layer offsets and sizes (what its evaluation reads) equal core.layout's, layer by layer."""
    native_layout = [tuple(layer) for layer in native.mlp_layout()]
    assert native_layout == [(w, b, fan_in, fan_out) for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS)]
    w, b, fan_in, fan_out = native_layout[-1]
    assert b + fan_out == N_PARAMS


def test_is_bias_marks_each_layers_biases_after_its_weights():
    from nis_fast.core.layout import is_bias

    mask = is_bias()
    assert mask.sum() == 8 * 32 + 1  # one bias per unit
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        assert not mask[w:w + fan_in * fan_out].any() and mask[b:b + fan_out].all()
