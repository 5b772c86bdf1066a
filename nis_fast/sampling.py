"""The paper's importance sampler, and uniform surface samples for metrics.

importance_samples: a pool of `pool_size` uniform points in [-1, 1]^3, their
exact signed distances d, then `n_samples` points drawn WITH replacement with
probability proportional to exp(-beta |d|) (Davies et al. 2020: 1e7 -> 1e6, beta 60).

Memory: the pool is never held. It is generated chunk by chunk from one
generator per chunk (seeded from `seed` and the chunk index), so only the pool's
distances (4 bytes per point) are kept; the drawn points are re-generated from
the same per-chunk generators instead of evaluating the SDF twice. The draw is an
exact inverse-CDF draw over the whole pool (sorted uniforms split by chunk
totals, then searchsorted in each chunk's cumulative weights, float64), so it
has no category limit (torch.multinomial stops at 2^24) and runs on any device.
"""
from __future__ import annotations

import numpy as np
import torch

from .mesh import Mesh, load_mesh

POOL_CHUNK = 1 << 20  # pool points per SDF call: ~12 MB of float32 points


def _device_of_sdf(device):
    return torch.device(device if device is not None else "cpu")


def _chunk_points(seed: int, index: int, count: int, device) -> torch.Tensor:
    """Chunk `index` of the pool: the same points every time for the same (seed, index)."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + index) % (2**63))
    return torch.rand(count, 3, generator=g, device=device, dtype=torch.float32) * 2 - 1


def _as_tensor(d, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(d) if not isinstance(d, torch.Tensor) else d).to(device).reshape(-1)


def importance_samples(sdf_fn, n_samples: int = 1_000_000, pool_size: int = 10_000_000, beta: float = 60.0,
                       seed: int = 0, device=None, chunk: int = POOL_CHUNK, uniform_fraction: float = 0.0):
    """(points [n, 3] float32, distances [n] float32) drawn the paper's way, on `device` (default cpu).

    sdf_fn(points_unit [m, 3] torch tensor on `device`) -> signed distances [m] (numpy or torch).
    uniform_fraction f: draw from the mixture (1 - f) exp(-beta |d|) + f uniform over the pool (the
    paper: 0), i.e. weights exp(-beta |d|) + c with c chosen to carry a share f of the total.
    Same seed, sizes and device -> the same samples.
    """
    if n_samples < 1 or pool_size < 1 or chunk < 1:
        raise ValueError(f"importance_samples: n_samples, pool_size, chunk must be >= 1 "
                         f"(got {n_samples}, {pool_size}, {chunk})")
    if not 0 <= beta < float("inf"):
        raise ValueError(f"importance_samples: beta must be finite and >= 0, got {beta}")
    if not 0 <= uniform_fraction < 1:
        raise ValueError(f"importance_samples: uniform_fraction must be in [0, 1), got {uniform_fraction}")
    device = _device_of_sdf(device)
    sizes = [min(chunk, pool_size - start) for start in range(0, pool_size, chunk)]
    floor = 0.0  # the uniform part of each weight, set once the importance total is known

    def weights(d):  # float64: a 1e7-point cumulative sum needs the mantissa
        return torch.exp(-beta * d.abs().double()) + floor

    # Pass 1: distances of every pool point, chunk by chunk, and each chunk's total weight.
    distances = []
    for i, count in enumerate(sizes):
        d = _as_tensor(sdf_fn(_chunk_points(seed, i, count, device)), device).to(torch.float32)
        if d.shape != (count,):
            raise ValueError(f"sdf_fn returned {tuple(d.shape)} values for {count} points")
        if not torch.isfinite(d).all():
            raise ValueError("sdf_fn returned NaN or infinite distances")
        distances.append(d)
    totals = torch.stack([weights(d).sum() for d in distances])
    if uniform_fraction > 0:
        floor = float(uniform_fraction / (1 - uniform_fraction) * totals.sum() / pool_size)
        totals = totals + floor * torch.tensor(sizes, dtype=totals.dtype, device=totals.device)
    bounds = torch.cumsum(totals, 0)
    if not bounds[-1] > 0:  # every exp(-beta |d|) underflowed: no point can be drawn
        raise ValueError(f"importance_samples: all pool weights exp(-{beta} |d|) are zero; lower beta")

    # Pass 2: sorted uniforms over [0, total), split by chunk, inverse CDF inside each chunk.
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) % (2**63))
    u, _ = torch.sort(torch.rand(n_samples, generator=g, device=device, dtype=torch.float64) * bounds[-1])
    per_chunk = torch.searchsorted(bounds, u, right=True).clamp_(max=len(sizes) - 1)
    counts = torch.bincount(per_chunk, minlength=len(sizes)).tolist()
    points, picked, start = [], [], 0
    for i, count in enumerate(counts):
        if count == 0:
            continue
        offset = bounds[i - 1] if i else 0.0
        cdf = torch.cumsum(weights(distances[i]), 0)
        idx = torch.searchsorted(cdf, u[start:start + count] - offset, right=True).clamp_(max=sizes[i] - 1)
        points.append(_chunk_points(seed, i, sizes[i], device)[idx])
        picked.append(distances[i][idx])
        start += count
    order = torch.randperm(n_samples, generator=g, device=device)  # draws are iid: no chunk order
    return torch.cat(points)[order], torch.cat(picked)[order]


def surface_samples(mesh, n: int, seed: int = 0, space: str = "unit", return_faces: bool = False):
    """(n, 3) float64 points uniform on the surface (area-weighted triangle, uniform barycentric), and with
    return_faces the face each lies on.

    mesh: anything load_mesh takes. space: "unit" (normalised frame) or "world".
    """
    if space not in ("unit", "world"):
        raise ValueError(f"space must be 'unit' or 'world', got {space!r}")
    mesh = mesh if isinstance(mesh, Mesh) else load_mesh(mesh, warn=False)
    vertices = mesh.unit_vertices if space == "unit" else mesh.vertices
    tri = vertices[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)  # uniform on the triangle: (1 - s, s (1 - r2), s r2)
    t = tri[face]
    points = (1 - s)[:, None] * t[:, 0] + (s * (1 - r2))[:, None] * t[:, 1] + (s * r2)[:, None] * t[:, 2]
    return (points, face) if return_faces else points
