"""Queries against a mesh's BVH (the native `MeshBvh`): closest point and signed distance, winding
number, first ray hit. Each wrapper takes a validated `Query` and writes into arrays of its kind.

Kernels: the traversal and triangle maths in csrc/include/nis/mesh_query.h (written once), run by an
OpenMP loop (csrc/cpu/mesh_query.cpp) or a CUDA kernel (csrc/cuda/mesh_query.cu).
Twins: tests/reference.py `_mesh_closest`, `_mesh_winding`, `_mesh_sdf`, `_mesh_intersect` (brute force).
Tests: tests/test_mesh_query.py; the public class on top is nis_fast.MeshSDF (tests/test_mesh_sdf.py).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.arrays import data_ptr, device_of, stream_ptr
from .native import native

SIGN_MODES = {"winding": 1, "pseudonormal": 2}
UNSIGNED = 0


def build_bvh(vertices: np.ndarray, faces: np.ndarray, leaf_size: int, float64: bool):
    """The native BVH of a mesh (float64 vertices [V, 3], int32 faces [F, 3]), built on the CPU."""
    return native.MeshBvh(np.ascontiguousarray(vertices, dtype=np.float64),
                          np.ascontiguousarray(faces, dtype=np.int32), int(leaf_size), bool(float64))


def mesh_defects(faces: np.ndarray, n_vertices: int) -> dict:
    """The connectivity defects of a mesh: `closed` (no face repeats an index, every edge walked by exactly two
    faces in opposite directions: the BVH build's own test, MeshBvh.closed, the one definition of a closed
    mesh), and the counts of boundary, non-manifold and inconsistently oriented edges and of duplicate faces."""
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    return dict(native.mesh_defects(data_ptr(faces), len(faces), int(n_vertices)))


def mesh_closest(bvh, q: "Query", sign_mode: int, beta: float, *, with_points: bool):
    """(distance, closest points or None, face ids or None) per point; the distance is signed by
    sign_mode (SIGN_MODES, or UNSIGNED)."""
    dist = q.empty(())
    point, face = (q.empty((3,)), q.empty((), index=True)) if with_points else (None, None)
    if q.n:
        bvh.closest(q.device, q.dtype_name, data_ptr(q.x), q.n, sign_mode, beta, data_ptr(dist),
                    0 if point is None else data_ptr(point), 0 if face is None else data_ptr(face),
                    *q.order_workspace(), q.stream)
    return dist, point, face


def mesh_winding(bvh, q: "Query", beta: float):
    """Generalised winding number per point (the fast approximation, accuracy set by beta)."""
    out = q.empty(())
    if q.n:
        bvh.winding(q.device, q.dtype_name, data_ptr(q.x), q.n, beta, data_ptr(out), *q.order_workspace(), q.stream)
    return out


def mesh_intersect(bvh, origins: "Query", directions: "Query"):
    """(t, face id) of the first hit along origins + t * directions, t >= 0; (inf, -1) on a miss."""
    t, face = origins.empty(()), origins.empty((), index=True)
    if origins.n:
        bvh.intersect(origins.device, origins.dtype_name, data_ptr(origins.x), data_ptr(directions.x), origins.n,
                      data_ptr(t), data_ptr(face), origins.stream)
    return t, face


class Query:
    """One validated batch of 3-vectors: contiguous, float32/float64, finite, on one device."""

    def __init__(self, x, label: str, like: "Query | None" = None):
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        self.device = device_of(x)
        self.is_torch = not isinstance(x, np.ndarray)
        if self.is_torch:
            x = _torch_float(x, label)
        else:
            x = np.ascontiguousarray(_numpy_float(x, label))
        if x.ndim not in (1, 2) or x.shape[-1] != 3:
            raise ValueError(f"{label} must have shape (N, 3) or (3,), got {tuple(x.shape)}")
        self.single = x.ndim == 1
        x = x.reshape(-1, 3)
        if like is not None:
            if (self.is_torch, self.device, x.dtype, x.shape) != (like.is_torch, like.device, like.x.dtype, like.x.shape):
                raise ValueError(f"{label} must match origins in kind, device, dtype and shape "
                                 f"({tuple(x.shape)} {x.dtype} vs {tuple(like.x.shape)} {like.x.dtype})")
        self.n = int(x.shape[0])
        if self.n and not bool(_isfinite_all(x)):
            raise ValueError(f"{label} contain NaN or infinite values")
        self.x = x
        self.dtype_name = "float64" if str(x.dtype).endswith("float64") else "float32"
        self.stream = stream_ptr(self.device)

    def empty(self, tail: tuple, index: bool = False):
        size = (self.n, *tail)
        if self.is_torch:
            return torch.empty(size, dtype=torch.int32 if index else self.x.dtype, device=self.x.device)
        return np.empty(size, dtype=np.int32 if index else self.x.dtype)

    def shape_out(self, out):
        return out[0] if self.single else out

    def order_workspace(self) -> tuple[int, int]:
        """(address, bytes) of the device memory a CUDA batch large enough to run in Morton order takes
        (from torch's caching allocator, on the current stream; kept alive by this query); else (0, 0)."""
        nbytes = native.cuda_query_order_bytes(self.n) if self.device == "cuda" else 0
        if not nbytes:
            return 0, 0
        self._workspace = torch.empty(nbytes, dtype=torch.uint8, device=self.x.device)
        return self._workspace.data_ptr(), nbytes


def _numpy_float(x: np.ndarray, label: str) -> np.ndarray:
    if x.dtype.byteorder not in ("=", "|"):  # e.g. big-endian from a file: the same numbers, native order
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype in (np.float32, np.float64):
        return x
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float64)
    if x.dtype == np.float16:
        return x.astype(np.float32)
    raise TypeError(f"{label} must be real numbers (float32/float64 or integers), got dtype {x.dtype}")


def _torch_float(x, label: str):
    x = x.detach()
    if x.dtype in (torch.float32, torch.float64):
        pass
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    elif not x.dtype.is_floating_point and not x.dtype.is_complex and x.dtype != torch.bool:
        x = x.double()
    else:
        raise TypeError(f"{label} must be real numbers (float32/float64 or integers), got dtype {x.dtype}")
    return x.contiguous()


def _isfinite_all(x):
    if isinstance(x, np.ndarray):
        return np.isfinite(x).all()
    return torch.isfinite(x).all().item()
