"""closest_point_on_triangles: per pair, the closest point of a triangle to a point.

Kernel: `nis::closest_point_on_triangle` (csrc/include/nis/triangle.h), run by an OpenMP loop
(csrc/cpu/triangle.cpp) or a CUDA kernel (csrc/cuda/triangle.cu), picked by where the inputs live.
Twin: tests/reference.py `_closest_point_on_triangles`. Test: tests/test_triangle.py.
It is the building block of the mesh queries, exposed for tests and for users who need exactly this.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.arrays import data_ptr, device_of, stream_ptr
from .native import native


def closest_point_on_triangles(points, triangles):
    """points [N, 3], triangles [N, 3, 3] (numpy or torch, float32/float64, same device)
    -> (closest points [N, 3], barycentrics [N, 3], region ids [N] int32), same kind as the input."""
    device = device_of(points)
    if device_of(triangles) != device:
        raise ValueError("closest_point_on_triangles: points and triangles must be on the same device")
    if tuple(points.shape[1:]) != (3,) or points.ndim != 2:
        raise ValueError(f"closest_point_on_triangles: points must have shape (N, 3), got {tuple(points.shape)}")
    if tuple(triangles.shape) != (points.shape[0], 3, 3):
        raise ValueError(f"closest_point_on_triangles: triangles must have shape ({points.shape[0]}, 3, 3), "
                         f"got {tuple(triangles.shape)}")
    dtype = str(points.dtype).replace("torch.", "")
    if dtype not in ("float32", "float64") or str(triangles.dtype).replace("torch.", "") != dtype:
        raise TypeError(f"closest_point_on_triangles: need float32 or float64 inputs of one dtype, "
                        f"got {points.dtype} and {triangles.dtype}")
    n = points.shape[0]
    if isinstance(points, np.ndarray):
        points, triangles = np.ascontiguousarray(points), np.ascontiguousarray(triangles)
        out_p, out_b = np.empty((n, 3), points.dtype), np.empty((n, 3), points.dtype)
        out_r = np.empty(n, np.int32)
    else:
        points, triangles = points.contiguous(), triangles.contiguous()
        out_p, out_b = torch.empty_like(points), torch.empty_like(points)
        out_r = torch.empty(n, dtype=torch.int32, device=points.device)
    native.closest_point_triangles(device, dtype, data_ptr(points), data_ptr(triangles), n, data_ptr(out_p),
                                   data_ptr(out_b), data_ptr(out_r), stream_ptr(device))
    return out_p, out_b, out_r
