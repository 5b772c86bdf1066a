"""Mesh input: load, validate and normalise a triangle mesh the paper's way.

`load_mesh` accepts a path (anything trimesh reads: obj, ply, stl, off, glb/gltf),
a `trimesh.Trimesh`, or a `(V, F)` pair of arrays. Problems that make a mesh
unusable (empty, NaN/inf, indices out of range, wrong shapes or dtypes) raise one
`MeshError` naming the source and the problem. Problems the engine can live with
(degenerate or duplicate faces, open boundaries, non-manifold edges, inconsistent
winding) are kept, counted in `Mesh.report`, and announced by a `MeshWarning`
that says what they may affect.

Normalisation (Davies et al. 2020): the smallest enclosing sphere's centre moves
to the origin and its radius becomes 0.9, so the shape sits inside [-1, 1]^3.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

UNIT_RADIUS = 0.9


class MeshError(ValueError):
    """A mesh that cannot be used, with the source and the reason in the message."""


class MeshWarning(UserWarning):
    """A mesh the engine handles, with a caveat about what may be affected."""


@dataclass(frozen=True)
class Normalization:
    """unit = (world - center) * scale; world = unit / scale + center."""

    center: np.ndarray  # (3,) float64
    scale: float

    def to_unit(self, points):
        return (points - self.center.astype(_dtype_of(points))) * self.scale

    def to_world(self, points):
        return points / self.scale + self.center.astype(_dtype_of(points))

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix taking world coordinates to unit coordinates."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.center * self.scale
        return m

    def to_dict(self) -> dict:
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}

    @staticmethod
    def from_dict(d: dict) -> "Normalization":
        center = np.asarray(d["center"], dtype=np.float64)
        scale = float(d["scale"])
        if center.shape != (3,) or not np.all(np.isfinite(center)) or not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"invalid normalisation transform {d!r}")
        return Normalization(center, scale)


IDENTITY = Normalization(np.zeros(3), 1.0)


def _dtype_of(points):
    """numpy dtype of an array or tensor (for casting the centre to match)."""
    if isinstance(points, np.ndarray):
        return points.dtype
    import torch

    return {torch.float32: np.float32, torch.float64: np.float64}.get(points.dtype, np.float64)


@dataclass
class Mesh:
    """A validated triangle mesh in its own (world) coordinates, plus the paper's normalisation."""

    vertices: np.ndarray  # (V, 3) float64, world coordinates
    faces: np.ndarray  # (F, 3) int32
    transform: Normalization
    name: str = "<arrays>"
    report: dict = field(default_factory=dict)

    @property
    def unit_vertices(self) -> np.ndarray:
        """Vertices in the normalised frame (bounding sphere radius 0.9 at the origin)."""
        return self.transform.to_unit(self.vertices)

    @property
    def triangles(self) -> np.ndarray:
        """(F, 3, 3) world-space corner positions."""
        return self.vertices[self.faces]

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def load_mesh(src, *, name: str | None = None, warn: bool = True) -> Mesh:
    """Load and validate a mesh from a path, a trimesh.Trimesh or a (V, F) pair."""
    vertices, faces, label = _read(src, name)
    vertices, faces = _check_arrays(vertices, faces, label)
    magnitude, extent = float(np.abs(vertices).max()), float(np.ptp(vertices, axis=0).max())
    if magnitude > 1e100 or 0 < extent < 1e-100:  # extent 0 is reported below as degenerate
        # Products of coordinates (areas, solid angles) overflow or underflow in float64 beyond this.
        raise MeshError(f"mesh {label}: coordinates up to {magnitude:.3g} with extent {extent:.3g} are outside the "
                        "supported range (|x| <= 1e100, extent >= 1e-100); rescale the mesh first")
    vertices, faces = _merge_duplicate_vertices(vertices, faces)
    report = mesh_report(vertices, faces)
    if report["degenerate_faces"] == len(faces):
        raise MeshError(f"mesh {label}: all {len(faces)} faces are degenerate (zero area); nothing to fit")
    if warn:
        _warn_about(report, label)
    center, radius = smallest_enclosing_sphere(vertices)
    if not radius > 0:
        raise MeshError(f"mesh {label}: all vertices coincide; the shape has no extent")
    return Mesh(vertices, faces, Normalization(center, UNIT_RADIUS / radius), label, report)


def _read(src, name):
    """(vertices, faces, label) from any accepted source, without validation."""
    import trimesh

    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        label = name or f"'{path}'"
        if not os.path.isfile(path):
            raise MeshError(f"mesh {label}: no such file")
        try:
            # process=False keeps NaNs and bad indices visible to our checks.
            loaded = trimesh.load(path, force="mesh", process=False)
        except Exception as exc:  # trimesh raises many types for unreadable files
            raise MeshError(f"mesh {label}: cannot be read ({type(exc).__name__}: {exc})") from exc
        if not isinstance(loaded, trimesh.Trimesh):
            raise MeshError(f"mesh {label}: holds no triangles (trimesh gave {type(loaded).__name__})")
        return np.asarray(loaded.vertices), np.asarray(loaded.faces), label
    if isinstance(src, trimesh.Trimesh):
        return np.asarray(src.vertices), np.asarray(src.faces), name or "<trimesh.Trimesh>"
    if isinstance(src, Mesh):
        return src.vertices, src.faces, name or src.name
    if isinstance(src, (tuple, list)) and len(src) == 2:
        v, f = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in src)
        return v, f, name or "<(V, F) arrays>"
    raise MeshError(f"mesh {name or '<input>'}: expected a path, a trimesh.Trimesh or (V, F) arrays, "
                    f"got {type(src).__name__}")


def _check_arrays(vertices, faces, label):
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise MeshError(f"mesh {label}: vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshError(f"mesh {label}: faces must have shape (F, 3) (triangles), got {faces.shape}")
    if not np.issubdtype(vertices.dtype, np.floating) and not np.issubdtype(vertices.dtype, np.integer):
        raise MeshError(f"mesh {label}: vertices must be real numbers, got dtype {vertices.dtype}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        if not (np.issubdtype(faces.dtype, np.floating) and np.all(faces == np.round(faces))):
            raise MeshError(f"mesh {label}: face indices must be integers, got dtype {faces.dtype}")
    if len(vertices) == 0 or len(faces) == 0:
        raise MeshError(f"mesh {label}: empty ({len(vertices)} vertices, {len(faces)} faces)")
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise MeshError(f"mesh {label}: {int(bad.sum())} vertices are NaN or infinite (first: vertex {int(np.argmax(bad))})")
    faces = np.asarray(faces).astype(np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(f"mesh {label}: face indices out of range [0, {len(vertices)}): "
                        f"min {faces.min()}, max {faces.max()}")
    if len(vertices) >= 2**31:
        raise MeshError(f"mesh {label}: {len(vertices)} vertices exceed the int32 index range")
    return vertices, np.ascontiguousarray(faces, dtype=np.int32)


def _merge_duplicate_vertices(vertices, faces):
    """Weld vertices at the same position, up to 1e-9 of the mesh's extent
    (OBJ files split them at UV seams; PLY/STL exports leave float noise)."""
    extent = max(float(np.ptp(vertices, axis=0).max()), np.finfo(np.float64).tiny)
    keys = np.round((vertices - vertices.min(axis=0)) / (extent * 1e-9))
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(vertices):
        return vertices, faces
    return np.ascontiguousarray(vertices[first]), np.ascontiguousarray(inverse.reshape(-1)[faces], dtype=np.int32)


def _unit_scale(points: np.ndarray) -> float:
    """The power of two that brings the points' extent to [0.5, 1) (1 for no extent): exact, and
    products of the scaled coordinates (areas) neither underflow nor overflow at any size."""
    extent = float(np.ptp(points, axis=0).max())
    return float(np.ldexp(1.0, -int(np.frexp(extent)[1]))) if extent > 0 else 1.0


def mesh_report(vertices: np.ndarray, faces: np.ndarray) -> dict:
    """Counts of the defects that matter to the SDF engine."""
    unit = _unit_scale(vertices)
    tri = (vertices * unit)[faces]
    double_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    scale = max(float(np.ptp(vertices, axis=0).max()) * unit, np.finfo(np.float64).tiny)
    degenerate = double_area <= 1e-14 * scale * scale
    collapsed = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])

    sorted_faces = np.sort(faces, axis=1)
    _, face_counts = np.unique(sorted_faces, axis=0, return_counts=True)
    good = ~collapsed
    directed = np.concatenate([faces[good][:, [0, 1]], faces[good][:, [1, 2]], faces[good][:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, edge_counts = np.unique(undirected, axis=0, return_counts=True)
    _, directed_counts = np.unique(directed, axis=0, return_counts=True)
    return {
        "vertices": int(len(vertices)),
        "faces": int(len(faces)),
        "degenerate_faces": int((degenerate | collapsed).sum()),
        "duplicate_faces": int((face_counts - 1).sum()),
        "boundary_edges": int((edge_counts == 1).sum()),
        "non_manifold_edges": int((edge_counts > 2).sum()),
        # An edge walked twice in the same direction: neighbouring faces disagree on orientation.
        "inconsistent_edges": int((directed_counts > 1).sum()),
        "watertight": bool((edge_counts == 2).all() and (directed_counts == 1).all()),
    }


_CAVEATS = {
    "degenerate_faces": "zero-area faces are kept but contribute nothing",
    "duplicate_faces": "duplicated faces double-count in the winding number (inside/outside may be off near them)",
    "boundary_edges": "the mesh is open: the sign comes from the generalised winding number and is uncertain near holes",
    "non_manifold_edges": "non-manifold edges: the pseudonormal sign is unreliable; the winding-number sign is used",
    "inconsistent_edges": "inconsistent face orientation: the winding number (and so the sign) is unreliable near those faces",
}


def _warn_about(report, label):
    found = [f"{report[k]} {k.replace('_', ' ')} ({why})" for k, why in _CAVEATS.items() if report[k]]
    if found:
        warnings.warn(f"mesh {label}: " + "; ".join(found), MeshWarning, stacklevel=3)


# --- smallest enclosing sphere -------------------------------------------------

def _circumsphere(support: np.ndarray):
    """Smallest sphere through all points of `support` (1-4 points), by least squares
    in their affine hull, so collinear/coplanar sets give a circle's sphere, not an error."""
    p0 = support[0]
    if len(support) == 1:
        return p0.copy(), 0.0
    a = support[1:] - p0
    rhs = 0.5 * np.einsum("ij,ij->i", a, a)
    lam = np.linalg.lstsq(a @ a.T, rhs, rcond=None)[0]
    center = p0 + lam @ a
    return center, float(np.sqrt(np.max(np.sum((support - center) ** 2, axis=1))))


def _welzl(points: np.ndarray):
    """Exact smallest enclosing sphere of a small point set (Welzl's algorithm).

    Written as a loop over the points that recurses only when a point must join the
    support set: the recursion is at most four deep, whatever the number of points.
    """
    eps = 1e-12

    def ball(n, support):  # smallest sphere of points[:n] with `support` on its boundary
        center, radius = _circumsphere(np.array(support)) if support else (np.zeros(3), -1.0)
        if len(support) == 4:
            return center, radius
        for i in range(n):
            p = points[i]
            if radius < 0 or np.linalg.norm(p - center) > radius * (1 + eps) + eps:
                center, radius = ball(i, support + [p])
        return center, radius

    return ball(len(points), [])


def smallest_enclosing_sphere(points: np.ndarray, seed: int = 0):
    """(center, radius) of the exact smallest sphere enclosing `points` (float64).

    Core-set iteration: solve Welzl exactly on a small subset, add the points that
    fall outside, repeat. The result encloses every point and is the smallest
    sphere of a subset, hence the smallest sphere of the whole set. Solved on the
    points moved to the origin and scaled to extent ~1 (Welzl's tolerances are
    absolute), then mapped back.
    """
    points = np.asarray(points, dtype=np.float64)
    middle, unit = (points.min(0) + points.max(0)) / 2, _unit_scale(points)
    center, radius = _smallest_enclosing_sphere_of_unit_points((points - middle) * unit, seed)
    center = center / unit + middle
    # Mapping back rounds the centre (by up to an ulp of `middle`): grow the radius to still reach every point.
    return center, max(radius / unit, float(np.linalg.norm(points - center, axis=1).max()))


def _smallest_enclosing_sphere_of_unit_points(points: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    # Start from the extreme points along a few directions: usually the support already.
    dirs = np.concatenate([np.eye(3), -np.eye(3), rng.normal(size=(20, 3))])
    core = points[np.unique(np.argmax(points @ dirs.T, axis=0))]
    for _ in range(200):
        center, radius = _welzl(core[rng.permutation(len(core))])
        dist = np.linalg.norm(points - center, axis=1)
        tol = 1e-10 * max(radius, np.abs(points).max(), 1e-300)
        outside = np.nonzero(dist > radius + tol)[0]
        if len(outside) == 0:
            return center, radius
        far = outside[np.argsort(dist[outside])[-8:]]
        core = np.concatenate([core, points[far]])
    raise RuntimeError("smallest_enclosing_sphere did not converge")  # not seen; bounded for safety
