"""Shared test fixtures: where ../shared lives, and the `cuda` marker's skip rule."""
import os
from pathlib import Path

import pytest
import torch

# Without a GPU the Triton kernels (tests/test_kernels_*.py) run in Triton's interpreter on CPU
# tensors; the variable must be set before triton is imported. Nothing else compiles Triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
# The shared test data sits beside the repository (or inside it, on machines that copy it there);
# NIS_FAST_SHARED names another place.
SHARED = Path(os.environ["NIS_FAST_SHARED"]) if os.environ.get("NIS_FAST_SHARED") else next(
    (p for p in (REPO.parent / "shared", REPO / "shared") if (p / "meshes").is_dir()), REPO.parent / "shared")
MESHES = SHARED / "meshes"
PAPER_WEIGHTS = SHARED / "paper_weights"

MESH_FILES = sorted(p.name for p in MESHES.glob("*") if p.suffix in (".obj", ".stl", ".off", ".ply"))


def mesh_path(name: str) -> Path:
    path = MESHES / name
    if not path.exists():
        pytest.skip(f"shared mesh {path} not found (the shared/ folder sits beside the repository)")
    return path


def pytest_collection_modifyitems(config, items):
    from nis_fast.ops.native import cuda_available, cuda_status

    if cuda_available():
        return
    reason = f"needs a CUDA GPU: {cuda_status()['reason'] or 'torch has no CUDA'}"
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch CPU thread, then restore: on a shared 2-core machine two OpenMP
    threads working on 32-wide layers mostly wait for each other."""

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
