"""Mesh input: load, validate and normalise a triangle mesh the paper's way.

`load_mesh` accepts a path (anything trimesh reads: obj, ply, stl, off, glb/gltf),
a `trimesh.Trimesh`, or a `(V, F)` pair of arrays. Problems that make a mesh
unusable (empty, NaN/inf, indices out of range, wrong shapes or dtypes) raise one
`MeshError` naming the source and the problem. Problems the engine can live with
(degenerate or duplicate faces, open boundaries, non-manifold edges, inconsistent
winding) are kept, counted in `Mesh.report`, and announced by a `MeshWarning`
that says what they may affect.

The mesh keeps its own (world) coordinates and the paper's normalisation into the
unit frame (nis_fast.core.normalization).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .core.normalization import UNIT_RADIUS, Normalization, power_of_two_scale, smallest_enclosing_sphere
from .ops.mesh_query import mesh_defects


# The file formats a folder of meshes is searched for (load_mesh reads what trimesh reads).
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


class MeshError(ValueError):
    """A mesh that cannot be used, with the source and the reason in the message."""


class MeshWarning(UserWarning):
    """A mesh the engine handles, with a caveat about what may be affected."""


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
    keys = np.round((vertices - vertices.min(axis=0)) / (extent * 1e-9)).astype(np.int64)  # < 2^31 a coordinate
    # np.unique(keys, axis=0, return_index=True, return_inverse=True), by a stable sort on the three columns
    # (unique on rows compares them as opaque bytes, an order of magnitude slower at millions of vertices).
    order = np.lexsort(keys.T[::-1])
    sorted_keys = keys[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
    if starts.all():
        return vertices, faces
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return np.ascontiguousarray(vertices[order[starts]]), np.ascontiguousarray(inverse[faces], dtype=np.int32)


def mesh_report(vertices: np.ndarray, faces: np.ndarray) -> dict:
    """Counts of the defects that matter to the SDF engine."""
    unit = power_of_two_scale(vertices)
    tri = (vertices * unit)[faces]
    double_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    scale = max(float(np.ptp(vertices, axis=0).max()) * unit, np.finfo(np.float64).tiny)
    degenerate = double_area <= 1e-14 * scale * scale
    collapsed = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])

    defects = mesh_defects(faces, len(vertices))  # edges counted over the faces that repeat no index
    return {
        "vertices": int(len(vertices)),
        "faces": int(len(faces)),
        "degenerate_faces": int((degenerate | collapsed).sum()),
        "duplicate_faces": defects["duplicate_faces"],
        "boundary_edges": defects["boundary_edges"],
        "non_manifold_edges": defects["non_manifold_edges"],
        # An edge walked twice in the same direction: neighbouring faces disagree on orientation.
        "inconsistent_edges": defects["inconsistent_edges"],
        # Closed by the engine's one definition (the BVH build's, MeshSDF.closed): a collapsed face opens a mesh.
        "watertight": defects["closed"],
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
