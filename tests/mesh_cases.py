"""Meshes and their brute-force answers, shared by the mesh tests (test_mesh_query.py, test_mesh_bvh.py,
test_mesh_sdf.py): the shared meshes (loaded and built once), query points near and away from a mesh
with their brute-force distance and winding number (tests/reference.py `_mesh_closest`,
`_mesh_winding`), a check of a raw mesh against both, and the small meshes on which the pseudonormal
sign is, or is not, exact."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import nis_fast as nf
from reference import _mesh_closest, _mesh_winding
from nis_fast.core.normalization import IDENTITY
from nis_fast.mesh import Mesh, MeshWarning
from tests.conftest import MESH_FILES as _FOUND, MESHES

MESH_DIR = MESHES
MESH_FILES = list(_FOUND)
if not MESH_FILES:  # keep the parametrised tests visible, skipped with a reason
    MESH_FILES = [pytest.param("missing", marks=pytest.mark.skip(reason=f"shared meshes not found at {MESH_DIR}"))]

# Closed, consistently oriented, manifold after nis_fast's vertex welding (Mesh.report['watertight']).
# The shared meshes that are closed and embedded (MeshSDF.pseudonormal_exact; a test keeps the list true).
WATERTIGHT = ["spot.obj", "armadillo.obj", "fandisk.obj", "thingi10k_32770.stl", "thingi10k_70375.stl"]
PAIR_BUDGET = 3_000_000  # points x triangles per mesh for the brute force: keeps the suite fast


@functools.lru_cache(maxsize=None)
def shared_mesh(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeshWarning)
        return nf.load_mesh(MESH_DIR / name)


@functools.lru_cache(maxsize=None)
def shared_sdf(name):
    return nf.MeshSDF(shared_mesh(name))


def extent(V):
    return float(np.ptp(V, axis=0).max())


def query_points(V, F, n, seed=0):
    """Half near the surface (surface samples + noise of 1% of the extent), half uniform in 1.5x the bounds."""
    rng = np.random.default_rng(seed)
    lo, hi = V.min(0), V.max(0)
    face = rng.integers(0, len(F), n // 2)
    surface = np.einsum("nk,nkd->nd", rng.dirichlet(np.ones(3), n // 2), V[F[face]])
    near = surface + rng.normal(scale=0.01 * extent(V), size=surface.shape)
    center, half = (lo + hi) / 2, 0.75 * (hi - lo)
    return np.concatenate([near, rng.uniform(center - half, center + half, size=(n - n // 2, 3))])


@functools.lru_cache(maxsize=None)
def oracle(name):
    """Query points of a mesh with their brute-force distance and winding number (computed once)."""
    mesh = shared_mesh(name)
    n = int(np.clip(PAIR_BUDGET // len(mesh.faces), 40, 300))
    p = query_points(mesh.vertices, mesh.faces, n)
    dist = _mesh_closest(mesh.vertices, mesh.faces, p)[0]
    return p, dist, _mesh_winding(mesh.vertices, mesh.faces, p)


def raw_mesh(V, F):
    """A Mesh exactly as given (no welding, no checks beyond the engine's own)."""
    return Mesh(np.ascontiguousarray(V, dtype=np.float64), np.ascontiguousarray(F, dtype=np.int32), IDENTITY)


def check_against_bruteforce(V, F, p, rtol=1e-10, winding_atol=0.1, leaf_size=4):
    sdf = nf.MeshSDF(raw_mesh(V, F), leaf_size=leaf_size)
    dist, _, face = sdf.closest(p)
    ref = _mesh_closest(V, F, p)[0]
    np.testing.assert_allclose(dist, ref, rtol=rtol, atol=1e-13 * extent(V))
    np.testing.assert_allclose(sdf.winding(p), _mesh_winding(V, F, p), atol=winding_atol)
    return sdf


# --- meshes where the pseudonormal sign stands in for the winding number (or must not) -----

def _sphere(radius=1.0, center=(0.0, 0.0, 0.0), flip=False, subdivisions=2):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    F = np.asarray(s.faces)
    return np.asarray(s.vertices) + center, F[:, ::-1] if flip else F


def _box(lo, hi):
    import trimesh

    b = trimesh.creation.box(bounds=[lo, hi])
    return np.asarray(b.vertices), np.asarray(b.faces)


def _pieces(*meshes):
    """One mesh made of separate pieces (no vertex shared between them)."""
    V, F, offset = [], [], 0
    for v, f in meshes:
        V.append(v)
        F.append(f + offset)
        offset += len(v)
    return np.concatenate(V), np.concatenate(F)


def _thin_wedge():
    """A closed prism whose cross-section has a 2e-6 radian apex: beside its long faces float32
    cannot tell the near face from the far one, whose pseudonormal has the other sign."""
    tri = np.array([[0.0, 0.0], [1.0, 1e-6], [1.0, -1e-6]])
    V = np.array([[x, y, z] for z in (-0.5, 0.5) for x, y in tri])
    F = np.array([[0, 1, 2], [3, 5, 4], [0, 4, 1], [0, 3, 4], [1, 5, 2], [1, 4, 5], [2, 3, 0], [2, 5, 3]])
    return V, F


def _pinched_tetrahedra():
    """Two tetrahedra sharing one vertex (their tips): closed, embedded, but that vertex has two
    fans of faces, and its pseudonormal no sign."""
    V = np.array([[0, 0, 0], [1, 1, 0.2], [1, -1, 0.2], [1, 0, 1.5], [-1, 1, -0.2], [-1, -1, -0.2], [-1, 0, 1.2]],
                 dtype=np.float64)
    F = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2], [0, 5, 4], [0, 4, 6], [0, 6, 5], [4, 5, 6]])
    return V, F


def _pinched_spheres(radius, flip, outside):
    """A unit sphere and a smaller one (turned, so the two fans at the pinch are not coplanar)
    sharing one vertex: at the top of the first and the bottom (outside) or top (inside) of the
    second. Joined at a vertex only, they are separate pieces with separate front sides."""
    turn = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    VA, FA = _sphere()
    VB, FB = _sphere(radius, flip=flip, subdivisions=1)
    VB = VB @ turn.T
    ia, ib = VA[:, 2].argmax(), (VB[:, 2].argmin() if outside else VB[:, 2].argmax())
    VB = VB - VB[ib] + VA[ia]
    index = np.arange(len(VB)) + len(VA)
    index[ib] = ia
    index[np.arange(len(VB)) > ib] -= 1
    return np.concatenate([VA, np.delete(VB, ib, 0)]), np.concatenate([FA, index[FB]])


# name: (mesh, whether the pseudonormal sign is exact on it)
SIGN_CASES = {
    "sphere": (lambda: _sphere(), True),
    "two spheres apart": (lambda: _pieces(_sphere(), _sphere(center=(3, 0, 0))), True),
    "shell: a sphere with a reversed one inside": (lambda: _pieces(_sphere(), _sphere(0.5, flip=True)), True),
    "thin wedge": (_thin_wedge, True),
    "tetrahedra pinched at a vertex": (_pinched_tetrahedra, True),
    "cavity pinched to the inside of a sphere": (lambda: _pinched_spheres(0.5, flip=True, outside=False), True),
    # Winding number -1 inside the inside-out sphere, 2 inside the inner one.
    "inside-out sphere pinched to a sphere": (lambda: _pinched_spheres(0.5, flip=True, outside=True), False),
    "sphere pinched to the inside of a sphere": (lambda: _pinched_spheres(0.5, flip=False, outside=False), False),
    # Winding number 2 inside the inner sphere: 1 on the inner sphere's front side.
    "nested spheres of the same orientation": (lambda: _pieces(_sphere(), _sphere(0.5)), False),
    # Winding number -1 inside: the front side is not at 0.
    "inside-out sphere": (lambda: _sphere(flip=True), False),
    "overlapping spheres": (lambda: _pieces(_sphere(), _sphere(center=(1, 0, 0))), False),
    # The facing sides share no vertex and lie nearer than float32 can separate: they are marked
    # unsafe, and the sign beside them comes from the winding number.
    "boxes nearer than float32 resolves": (lambda: _pieces(_box([0, 0, 0], [1, 1, 1]),
                                                           _box([1 + 1e-8, 0, 0], [2, 1, 1])), True),
    # Its sides are slivers (corner angles of 1e-8), where the pair tests cannot be trusted.
    "plate thinner than float32 rounding": (lambda: _box([0, 0, 0], [1, 1, 1e-8]), False),
    "boxes touching along a face": (lambda: _pieces(_box([0, 0, 0], [1, 1, 1]), _box([1, 0, 0], [2, 1, 1])), False),
    "a sphere and its reversed copy": (lambda: _pieces(_sphere(), _sphere(flip=True)), False),
    "open sphere": (lambda: (_sphere()[0], _sphere()[1][1:]), False),
}

