"""Plain, obviously-right twins of the fast paths, used only by tests and benchmarks.

No tricks, no speed: float64 numpy, brute force. Each fast op is compared
against the function here of the same name without the leading underscore.
"""
from __future__ import annotations

import numpy as np

# --- Triangle maths ---------------------------------------------------------------


def _closest_on_segments(p, a, b):
    """Closest points on segments a-b to p (all [N, 3]), and their parameters t in [0, 1]."""
    ab = b - a
    len2 = np.einsum("ij,ij->i", ab, ab)
    t = np.where(len2 > 0, np.einsum("ij,ij->i", p - a, ab) / np.where(len2 > 0, len2, 1), 0.0)
    t = np.clip(t, 0.0, 1.0)
    return a + ab * t[:, None], t


def _closest_point_triangles(p, tri):
    """Closest point of p[i] on triangle tri[i] ([N, 3], [N, 3, 3]), float64.

    The candidates are the projection onto the plane (kept only when it falls
    inside the triangle) and the closest points of the three edges; the answer
    is the nearest candidate. Returns (points [N, 3], distances [N]).
    """
    p = np.asarray(p, np.float64)
    tri = np.asarray(tri, np.float64)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    candidates = [_closest_on_segments(p, a, b)[0], _closest_on_segments(p, b, c)[0], _closest_on_segments(p, c, a)[0]]

    n = np.cross(b - a, c - a)
    n2 = np.einsum("ij,ij->i", n, n)
    ok = n2 > 0
    safe_n2 = np.where(ok, n2, 1.0)
    proj = p - n * (np.einsum("ij,ij->i", p - a, n) / safe_n2)[:, None]
    # Barycentric coordinates of the projection via sub-triangle areas.
    u = np.einsum("ij,ij->i", np.cross(c - b, proj - b), n) / safe_n2
    v = np.einsum("ij,ij->i", np.cross(a - c, proj - c), n) / safe_n2
    w = 1.0 - u - v
    inside = ok & (u >= 0) & (v >= 0) & (w >= 0)
    candidates.append(np.where(inside[:, None], proj, np.inf))

    cand = np.stack(candidates)  # [4, N, 3]
    dist = np.linalg.norm(cand - p[None], axis=2)
    dist = np.where(np.isfinite(dist), dist, np.inf)
    best = np.argmin(dist, axis=0)
    idx = np.arange(len(p))
    return cand[best, idx], dist[best, idx]
