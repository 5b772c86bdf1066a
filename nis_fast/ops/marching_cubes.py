"""Marching cubes in three native passes over a set of cells of a node grid, and on a dense volume.

Kernel: csrc/include/nis/mcubes.h (the classic Lorensen-Cline tables, written once), run by
csrc/cpu/decode.cpp (OpenMP) or csrc/cuda/decode.cu. Twin: tests/reference.py `_marching_cubes`
(skimage's Lorensen marching cubes). Test: tests/test_marching_cubes.py.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.arrays import data_ptr, stream_ptr
from .native import native


def extract_cells(values, node_keys, cells, ny: int, nz: int, level: float, device: str):
    """Marching cubes over `cells` (int64 low-corner node keys) of a node grid with `values` at the sorted
    `node_keys` (None: a dense grid in C order); torch tensors on `device`. Three native passes (cases, triangle
    edge keys, vertices) around a prefix sum and the welding: one vertex per distinct grid-edge key."""
    grid = (data_ptr(values), 0 if node_keys is None else data_ptr(node_keys),
            len(values) if node_keys is None else len(node_keys), ny, nz, float(level))
    stream = stream_ptr(device)
    cases = torch.empty(len(cells), dtype=torch.uint8, device=cells.device)
    counts = torch.empty(len(cells), dtype=torch.int64, device=cells.device)
    native.mc_cell_cases(device, *grid, data_ptr(cells), len(cells), data_ptr(cases), data_ptr(counts), stream)
    crossed = counts > 0
    cells, cases, counts = cells[crossed], cases[crossed], counts[crossed]
    first = torch.cumsum(counts, 0) - counts
    keys = torch.empty(3 * int(counts.sum()), dtype=torch.int64, device=cells.device)
    native.mc_cell_edges(device, *grid, data_ptr(cells), data_ptr(cases), data_ptr(first), len(cells),
                         data_ptr(keys), stream)
    edges, corner_vertex = torch.unique(keys, return_inverse=True)
    vertices = torch.empty((len(edges), 3), dtype=torch.float32, device=cells.device)
    native.mc_edge_vertices(device, *grid, data_ptr(edges), len(edges), data_ptr(vertices), stream)
    return vertices, corner_vertex.reshape(-1, 3).to(torch.int32)


def marching_cubes(volume, level: float = 0.0):
    """Marching cubes on a dense volume [nx, ny, nz]: (vertices [V, 3] float32 in index units, faces [F, 3] int32).

    Classic Lorensen-Cline cases (no ambiguity resolution), one vertex per crossed
    grid edge (a welded, indexed mesh), faces wound so that their normals point
    towards increasing values (outwards for an SDF). The same mesh as
    skimage.measure.marching_cubes(volume, level, method="lorensen") (default gradient_direction="descent").
    """
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    if volume.ndim != 3 or min(volume.shape) < 2:
        raise ValueError(f"nis_fast.decode.marching_cubes: need a 3D volume of at least 2x2x2, got {volume.shape}")
    nx, ny, nz = volume.shape
    i, j, k = torch.meshgrid(torch.arange(nx - 1), torch.arange(ny - 1), torch.arange(nz - 1), indexing="ij")
    cells = ((i * ny + j) * nz + k).reshape(-1)
    vertices, faces = extract_cells(torch.from_numpy(volume.reshape(-1)), None, cells, ny, nz, level, "cpu")
    return vertices.numpy(), faces.numpy()
