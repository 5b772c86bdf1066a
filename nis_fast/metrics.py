"""Accuracy of a fitted shape against its mesh: the paper's three metrics, in the unit frame.

- surface_error:  mean |f(x)| at points uniform on the surface (f should vanish there);
- grid_l1:        mean |f(x) - d(x)| on a regular grid over [-1, 1]^3 (d: exact signed distance);
- importance_l1:  mean |f(x) - d(x)| at a fresh importance-sampled set (the training distribution).

`mesh` is anything load_mesh takes; `sdf_fn` (exact SDF in the unit frame) defaults to
nis_fast.sdf.MeshSDF(mesh, space="unit").sdf and may be passed to reuse one BVH.
"""
from __future__ import annotations

import numpy as np
import torch

from .mesh import Mesh, load_mesh
from .sampling import importance_samples, surface_samples

_CHUNK = 1 << 20


def _mesh(mesh) -> Mesh:
    return mesh if isinstance(mesh, Mesh) else load_mesh(mesh, warn=False)


def _exact_sdf(mesh):
    from .sdf import MeshSDF

    return MeshSDF(mesh, space="unit").sdf


def _unit_sdf(shape, points: torch.Tensor) -> torch.Tensor:
    return shape.sdf(points.to(shape.device), space="unit").to(points.device)


def surface_error(shape, mesh, n: int = 100_000, seed: int = 0) -> float:
    """Mean |f| at n area-uniform surface points."""
    points = torch.from_numpy(surface_samples(_mesh(mesh), n, seed).astype(np.float32))
    return float(_unit_sdf(shape, points).abs().double().mean())


def grid_l1(shape, mesh, resolution: int = 128, sdf_fn=None) -> float:
    """Mean |f - d| over a resolution^3 grid of cell centres covering [-1, 1]^3."""
    sdf_fn = sdf_fn or _exact_sdf(_mesh(mesh))
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
    total = 0.0
    for xi in axis.split(max(1, _CHUNK // resolution**2)):  # slabs of whole x-planes
        grid = torch.stack(torch.meshgrid(xi, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        d = torch.as_tensor(sdf_fn(grid)).reshape(-1).to(torch.float32)
        total += float((_unit_sdf(shape, grid) - d).abs().double().sum())
    return total / resolution**3


def importance_l1(shape, mesh, n: int = 100_000, pool_size: int = 1_000_000, beta: float = 60.0,
                  seed: int = 12345, sdf_fn=None) -> float:
    """Mean |f - d| at n fresh importance samples (pool_size uniform points, p ~ exp(-beta |d|))."""
    sdf_fn = sdf_fn or _exact_sdf(_mesh(mesh))
    points, d = importance_samples(sdf_fn, n, pool_size, beta, seed)
    return float((_unit_sdf(shape, points) - d).abs().double().mean())


def evaluate(shape, mesh, sdf_fn=None, seed: int = 0) -> dict:
    """The paper's three metrics (unit frame): surface_error, grid_l1, importance_l1."""
    mesh = _mesh(mesh)
    sdf_fn = sdf_fn or _exact_sdf(mesh)
    return {
        "surface_error": surface_error(shape, mesh, seed=seed),
        "grid_l1": grid_l1(shape, mesh, sdf_fn=sdf_fn),
        "importance_l1": importance_l1(shape, mesh, seed=seed + 12345, sdf_fn=sdf_fn),
    }
