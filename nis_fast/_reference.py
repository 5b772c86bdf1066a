"""Plain, obviously-right twins of the fast paths, used only by tests and benchmarks.
No tricks, no acceleration structures. Each section belongs to one area of the engine.
"""
from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# Mesh distance, winding number and sign (twins of csrc/include/nis/{bvh,winding}.h, nis_fast.sdf)
# ---------------------------------------------------------------------------------------------

_PAIRS_PER_CHUNK = 1 << 20  # points x triangles evaluated at once (bounds memory to ~0.5 GB peak)


def _mesh_dot(a, b):
    return np.einsum("...k,...k->...", a, b)


def _mesh_closest_on_segments(p, a, b):
    """Closest points of p ([P,1,3]) on segments a-b ([1,T,3]); zero-length segments give a."""
    ab = b - a
    len2 = _mesh_dot(ab, ab)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(len2 > 0, _mesh_dot(p - a, ab) / np.where(len2 > 0, len2, 1.0), 0.0)
    return a + ab * np.clip(t, 0.0, 1.0)[..., None]


def _mesh_closest_on_triangles(p, a, b, c):
    """[P,T,3] closest points of p on every triangle: the plane projection when it
    falls inside the triangle, else the closest of the three edges. (A different
    formulation from the Voronoi-region walk the native code uses, on purpose.)"""
    n = np.cross(b - a, c - a)
    n2 = _mesh_dot(n, n)
    safe_n2 = np.where(n2 > 0, n2, 1.0)
    proj = p - n * (_mesh_dot(p - a, n) / safe_n2)[..., None]
    inside = (n2 > 0) & (_mesh_dot(np.cross(b - a, proj - a), n) >= 0) & (_mesh_dot(np.cross(c - b, proj - b), n) >= 0) \
        & (_mesh_dot(np.cross(a - c, proj - c), n) >= 0)
    best = np.where(inside[..., None], proj, np.inf)
    best_d2 = np.where(inside, _mesh_dot(proj - p, proj - p), np.inf)
    for u, v in ((a, b), (b, c), (c, a)):
        q = _mesh_closest_on_segments(p, u, v)
        d2 = _mesh_dot(q - p, q - p)
        closer = d2 < best_d2
        best = np.where(closer[..., None], q, best)
        best_d2 = np.where(closer, d2, best_d2)
    return best, best_d2


def _closest_point_bruteforce(V, F, p):
    """(distance [P], closest point [P,3], face id [P]) over all triangles, float64."""
    V, F = np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
    a, b, c = (V[F[:, k]][None] for k in range(3))
    dist, point, face = np.empty(len(p)), np.empty((len(p), 3)), np.empty(len(p), dtype=np.int64)
    step = max(1, _PAIRS_PER_CHUNK // len(F))
    for s in range(0, len(p), step):
        q = p[s:s + step, None]
        cp, d2 = _mesh_closest_on_triangles(q, a, b, c)
        j = np.argmin(d2, axis=1)
        rows = np.arange(len(j))
        dist[s:s + step] = np.sqrt(d2[rows, j])
        point[s:s + step] = cp[rows, j]
        face[s:s + step] = j
    return dist, point, face


def _winding_number_bruteforce(V, F, p):
    """Generalised winding number: sum of signed solid angles / (4 pi), van Oosterom & Strackee."""
    V, F = np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
    out = np.empty(len(p))
    step = max(1, _PAIRS_PER_CHUNK // len(F))
    for s in range(0, len(p), step):
        q = p[s:s + step, None]
        a, b, c = (V[F[:, k]][None] - q for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = _mesh_dot(a, np.cross(b, c))
        den = la * lb * lc + _mesh_dot(a, b) * lc + _mesh_dot(b, c) * la + _mesh_dot(c, a) * lb
        out[s:s + step] = np.sum(2.0 * np.arctan2(num, den), axis=1) / (4.0 * np.pi)
    return out


def _sdf_bruteforce(V, F, p):
    """Signed distance: exact distance, negative where the winding number exceeds 1/2."""
    dist = _closest_point_bruteforce(V, F, p)[0]
    return np.where(_winding_number_bruteforce(V, F, p) > 0.5, -dist, dist)


def _ray_bruteforce(V, F, origins, directions):
    """(t, face id) of the first hit of each ray o + t d, t >= 0, over all triangles
    (both sides; inf and -1 on a miss). Moller-Trumbore with inclusive edges."""
    V, F = np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    a, b, c = (V[F[:, k]][None] for k in range(3))
    e1, e2 = b - a, c - a
    t_out, f_out = np.full(len(o), np.inf), np.full(len(o), -1, dtype=np.int64)
    step = max(1, _PAIRS_PER_CHUNK // len(F))
    for s in range(0, len(o), step):
        oo, dd = o[s:s + step, None], d[s:s + step, None]
        pv = np.cross(dd, e2)
        det = _mesh_dot(e1, pv)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            tv = oo - a
            u = _mesh_dot(tv, pv) * inv
            qv = np.cross(tv, e1)
            v = _mesh_dot(dd, qv) * inv
            t = _mesh_dot(e2, qv) * inv
        hit = (det != 0) & (u >= 0) & (u <= 1) & (v >= 0) & (u + v <= 1) & (t >= 0)
        t = np.where(hit, t, np.inf)
        j = np.argmin(t, axis=1)
        rows = np.arange(len(j))
        t_out[s:s + step] = t[rows, j]
        f_out[s:s + step] = np.where(np.isfinite(t[rows, j]), j, -1)
    return t_out, f_out
