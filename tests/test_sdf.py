"""MeshSDF against brute force over all triangles, libigl and Open3D, on every shared mesh and edge cases."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest

import nis_fast as nf
from nis_fast._backend import cuda_available
from nis_fast._reference import _closest_point_bruteforce, _sdf_bruteforce, _winding_number_bruteforce


def _shared() -> Path:
    here = Path(__file__).resolve().parents[1].parent / "shared"
    return here if here.is_dir() else Path("/work/shared")


MESH_DIR = _shared() / "meshes"
MESH_FILES = sorted(p.name for p in MESH_DIR.glob("*") if p.suffix in (".obj", ".off", ".ply", ".stl")) \
    if MESH_DIR.is_dir() else []
needs_meshes = pytest.mark.skipif(not MESH_FILES, reason=f"shared test meshes not found at {MESH_DIR}")
WATERTIGHT = ["spot.obj", "armadillo.obj", "fandisk.obj", "thingi10k_32770.stl"]


@functools.lru_cache(maxsize=None)
def _mesh(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nf.mesh.MeshWarning)
        return nf.load_mesh(MESH_DIR / name)


@functools.lru_cache(maxsize=None)
def _sdf(name):
    return nf.MeshSDF(_mesh(name))


def _query_points(mesh, n, seed=0):
    """Half near the surface (surface samples + small noise), half in a box 1.5x the bounds."""
    rng = np.random.default_rng(seed)
    V, F = mesh.vertices, mesh.faces
    lo, hi = V.min(0), V.max(0)
    extent = float((hi - lo).max())
    face = rng.integers(0, len(F), n // 2)
    bary = rng.dirichlet(np.ones(3), n // 2)
    surface = np.einsum("nk,nkd->nd", bary, V[F[face]])
    near = surface + rng.normal(scale=0.01 * extent, size=surface.shape)
    center, half = (lo + hi) / 2, 0.75 * (hi - lo)
    far = rng.uniform(center - half, center + half, size=(n - n // 2, 3))
    return np.concatenate([near, far])


def _n_points(mesh):
    return 100 if len(mesh.faces) > 40000 else 300


@needs_meshes
@pytest.mark.parametrize("name", MESH_FILES)
def test_closest_matches_bruteforce(name):
    mesh, sdf = _mesh(name), _sdf(name)
    p = _query_points(mesh, _n_points(mesh))
    dist, point, face = sdf.closest(p)
    ref_dist = _closest_point_bruteforce(mesh.vertices, mesh.faces, p)[0]
    scale = float(np.ptp(mesh.vertices, axis=0).max())
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(np.linalg.norm(point - p, axis=1), dist, rtol=1e-10, atol=1e-12 * scale)
    # The face reported holds the closest point: its own distance is the minimum.
    own = np.array([_closest_point_bruteforce(mesh.vertices, mesh.faces[f:f + 1], q)[0][0] for f, q in zip(face, p)])
    np.testing.assert_allclose(own, ref_dist, rtol=1e-10, atol=1e-12 * scale)


@needs_meshes
@pytest.mark.parametrize("name", MESH_FILES)
def test_winding_and_sign_match_bruteforce(name):
    mesh, sdf = _mesh(name), _sdf(name)
    p = _query_points(mesh, _n_points(mesh), seed=1)
    w = sdf.winding(p)
    ref_w = _winding_number_bruteforce(mesh.vertices, mesh.faces, p)
    assert np.abs(w - ref_w).max() < 0.1  # beta = 2: fast, far below what the sign needs
    decided = np.abs(ref_w - 0.5) > 0.1  # away from the ambiguous half-way value
    assert np.array_equal(sdf.contains(p)[decided], (ref_w > 0.5)[decided])
    d = sdf.sdf(p)
    ref_d = _sdf_bruteforce(mesh.vertices, mesh.faces, p)
    scale = float(np.ptp(mesh.vertices, axis=0).max())
    np.testing.assert_allclose(d[decided], ref_d[decided], rtol=1e-10, atol=1e-12 * scale)
