"""Plain, obviously-right twins of the fast paths, used only by tests and benchmarks.

No tricks, no speed: float64 numpy, brute force; torch autograd for the MLP. Each fast op is compared
against the function here of the same name without the leading underscore.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .network import forward_torch

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


# ---------------------------------------------------------------------------------------------
# Mesh distance, winding number and sign (twins of csrc/include/nis/{bvh,winding}.h, nis_fast.sdf)
# ---------------------------------------------------------------------------------------------

_PAIRS_PER_CHUNK = 1 << 20  # points x triangles evaluated at once (bounds memory to ~0.5 GB peak)


def _dot(a, b):
    return np.einsum("...k,...k->...", a, b)


def _closest_on_segments_broadcast(p, a, b):
    """Closest points of p ([P,1,3]) on segments a-b ([1,T,3]); zero-length segments give a."""
    ab = b - a
    len2 = _dot(ab, ab)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(len2 > 0, _dot(p - a, ab) / np.where(len2 > 0, len2, 1.0), 0.0)
    return a + ab * np.clip(t, 0.0, 1.0)[..., None]


def _closest_on_triangles(p, a, b, c):
    """[P,T,3] closest points of p on every triangle: the plane projection when it
    falls inside the triangle, else the closest of the three edges. (A different
    formulation from the Voronoi-region walk the native code uses, on purpose.)"""
    n = np.cross(b - a, c - a)
    n2 = _dot(n, n)
    safe_n2 = np.where(n2 > 0, n2, 1.0)
    proj = p - n * (_dot(p - a, n) / safe_n2)[..., None]
    inside = (n2 > 0) & (_dot(np.cross(b - a, proj - a), n) >= 0) & (_dot(np.cross(c - b, proj - b), n) >= 0) \
        & (_dot(np.cross(a - c, proj - c), n) >= 0)
    best = np.where(inside[..., None], proj, np.inf)
    best_d2 = np.where(inside, _dot(proj - p, proj - p), np.inf)
    for u, v in ((a, b), (b, c), (c, a)):
        q = _closest_on_segments_broadcast(p, u, v)
        d2 = _dot(q - p, q - p)
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
        cp, d2 = _closest_on_triangles(q, a, b, c)
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
        num = _dot(a, np.cross(b, c))
        den = la * lb * lc + _dot(a, b) * lc + _dot(b, c) * la + _dot(c, a) * lb
        out[s:s + step] = np.sum(2.0 * np.arctan2(num, den), axis=1) / (4.0 * np.pi)
    return out


def _sdf_bruteforce(V, F, p):
    """Signed distance: exact distance, negative where the winding number exceeds 1/2."""
    dist = _closest_point_bruteforce(V, F, p)[0]
    return np.where(_winding_number_bruteforce(V, F, p) > 0.5, -dist, dist)


# --- MLP references (twins of nis_fast.kernels: functional layers + autograd) -----
def _per_shape(params, x, fn):
    """Apply fn(params [7553], x [N, 3]) to one network, or to each of a stack [S, 7553] / [S, N, 3]."""
    if params.dim() == 1:
        return fn(params, x)
    outs = [fn(p, xs) for p, xs in zip(params, x)]
    return tuple(torch.stack(o) for o in zip(*outs)) if isinstance(outs[0], tuple) else torch.stack(outs)


def _mlp_forward(params, x):
    """sdf = forward_torch(params, x), for one network or a stack of them."""
    return _per_shape(params, x, forward_torch)


def _mlp_loss_and_grad(params, x, target):
    """(mean |f(x) - target|, its gradient w.r.t. params) by autograd, per network."""
    def one(p, xs, t):
        p = p.detach().clone().requires_grad_(True)
        loss = (forward_torch(p, xs) - t).abs().mean()
        (grad,) = torch.autograd.grad(loss, p)
        return loss.detach(), grad

    if params.dim() == 1:
        return one(params, x, target)
    losses, grads = zip(*(one(p, xs, t) for p, xs, t in zip(params, x, target)))
    return torch.stack(losses), torch.stack(grads)


def _mlp_forward_and_input_grad(params, x):
    """(sdf, d sdf / d x) by autograd, per network."""
    def one(p, xs):
        xs = xs.detach().clone().requires_grad_(True)
        y = forward_torch(p, xs)
        (grad,) = torch.autograd.grad(y.sum(), xs)
        return y.detach(), grad

    return _per_shape(params, x, one)


def _adam_step_(params, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-7):
    """Keras' Adam, written out: alpha = lr sqrt(1 - b2^t) / (1 - b1^t), m, v moving averages,
    params -= alpha m / (sqrt(v) + eps). In place."""
    alpha = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    m.mul_(beta1).add_((1.0 - beta1) * grad)
    v.mul_(beta2).add_((1.0 - beta2) * grad * grad)
    params.sub_(alpha * m / (v.sqrt() + eps))
