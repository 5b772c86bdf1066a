"""Plain, obviously-right twins of the fast paths, used only by tests and benchmarks.

No tricks, no speed: float64 numpy, brute force; torch autograd for the MLP. Each op wrapper in
nis_fast/ops (and each Triton launcher in nis_fast.kernels) is compared against the function here of
the same name with a leading underscore:

    nis_fast.ops.triangle.closest_point_on_triangles  _closest_point_on_triangles   tests/test_triangle.py
    nis_fast.ops.mesh_query.mesh_closest / mesh_winding / mesh_intersect (through MeshSDF)
                                                      _mesh_closest, _mesh_winding, _mesh_sdf, _mesh_intersect
                                                                                    tests/test_mesh_query.py
    nis_fast.ops.mlp.eval_sdf                         _mlp_forward_numpy, _sdf_gradient             tests/test_mlp.py
    nis_fast.ops.mlp.mlp_forward_torch, kernels.mlp_forward(_and_input_grad)
                                                      _mlp_forward, _mlp_forward_and_input_grad   tests/test_kernels_mlp.py
    nis_fast.ops.mlp.TorchLossGrad, kernels.mlp_loss_and_grad   _mlp_loss_and_grad   tests/test_mlp.py, test_kernels_mlp.py
    nis_fast.ops.mlp.adam_step_torch, kernels.adam_step_        _adam_step_          tests/test_mlp.py, test_kernels_adam.py
    nis_fast.ops.render.sphere_trace                  _sphere_trace, _render       tests/test_render.py
    nis_fast.ops.marching_cubes.marching_cubes        _marching_cubes              tests/test_marching_cubes.py
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nis_fast.core.layout import LAYER_SIZES, N_PARAMS, OFFSETS, unflatten

# ---------------------------------------------------------------------------------------------
# Triangles and meshes: distance, winding number, sign, rays (twins of csrc/include/nis/*.h via nis_fast/ops)
# ---------------------------------------------------------------------------------------------

_PAIRS_PER_CHUNK = 1 << 20  # points x triangles evaluated at once (bounds memory to ~0.5 GB peak)


def _mesh_defects(V, F):
    """Connectivity defect counts by np.unique on rows (nis_fast.mesh.mesh_report's native counts)."""
    collapsed = (F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 2] == F[:, 0])
    _, face_counts = np.unique(np.sort(F, axis=1), axis=0, return_counts=True)
    good = F[~collapsed]
    directed = np.concatenate([good[:, [0, 1]], good[:, [1, 2]], good[:, [2, 0]]])
    _, edge_counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    _, directed_counts = np.unique(directed, axis=0, return_counts=True)
    return {"duplicate_faces": int((face_counts - 1).sum()), "boundary_edges": int((edge_counts == 1).sum()),
            "non_manifold_edges": int((edge_counts > 2).sum()), "inconsistent_edges": int((directed_counts > 1).sum())}


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


def _closest_point_on_triangles(p, tri):
    """Closest point of p[i] on triangle tri[i] ([N, 3], [N, 3, 3]), float64: (points [N, 3], distances [N])."""
    p, tri = np.asarray(p, np.float64), np.asarray(tri, np.float64)
    point, d2 = _mesh_closest_on_triangles(p, tri[:, 0], tri[:, 1], tri[:, 2])
    return point, np.sqrt(d2)


def _mesh_closest(V, F, p):
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


def _mesh_winding(V, F, p):
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


def _mesh_sdf(V, F, p):
    """Signed distance: exact distance, negative where the winding number exceeds 1/2."""
    dist = _mesh_closest(V, F, p)[0]
    return np.where(_mesh_winding(V, F, p) > 0.5, -dist, dist)


def _mesh_intersect(V, F, origins, directions):
    """(t, face id) of the first hit of each ray o + t d, t >= 0, over all triangles
    (both sides; inf and -1 on a miss). The watertight test of Woop, Benthin & Wald (2013), as
    ray.h: shear the ray onto +z, then the signs of the three edge functions, zero included."""
    V, F = np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    t_out, f_out = np.full(len(o), np.inf), np.full(len(o), -1, dtype=np.int64)
    corners = V[F]  # [faces, corner, xyz]
    for i in range(len(o)):
        kz = int(np.argmax(np.abs(d[i])))  # the first of equal components, as sheared_ray
        kx, ky = (kz + 1) % 3, (kz + 2) % 3
        sx, sy, sz = d[i, kx] / d[i, kz], d[i, ky] / d[i, kz], 1.0 / d[i, kz]
        rel = corners - o[i]
        z = rel[..., kz]
        x, y = rel[..., kx] - sx * z, rel[..., ky] - sy * z
        edge = [x[:, (k + 2) % 3] * y[:, (k + 1) % 3] - y[:, (k + 2) % 3] * x[:, (k + 1) % 3] for k in range(3)]
        u, v, w = edge  # u: edge bc (opposite a), v: ca, w: ab
        det = u + v + w
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (u * z[:, 0] + v * z[:, 1] + w * z[:, 2]) * sz / det
        mixed = ((u < 0) | (v < 0) | (w < 0)) & ((u > 0) | (v > 0) | (w > 0))
        t = np.where(~mixed & (det != 0) & (t >= 0), t, np.inf)
        j = int(np.argmin(t))
        if np.isfinite(t[j]):
            t_out[i], f_out[i] = t[j], j
    return t_out, f_out


# --- MLP references (twins of nis_fast.kernels: functional layers + autograd) -----

# How far the fused kernels (nis_fast.kernels) may be from the float64 twins here, per matmul
# precision; the kernel tests and benchmarks/gpu_check_kernels.py (on a GPU) both hold them to it.
# SDF_TOL: max |kernel - reference| on sdf values (|sdf| < 1). GRAD_TOL: ||g - g_ref|| / ||g_ref|| on
# parameter gradients. INPUT_GRAD_TOL: d sdf / dx is piecewise constant in the ReLU pattern; where
# rounding flips a ReLU a point's gradient jumps (up to ~100 % off for 16-bit operands), so the bound is
# on the median over points of |g - g_ref| / |g_ref|. tf32's is looser than fp16's although both keep
# 10 mantissa bits: the tensor cores truncate fp32 operands to tf32 rather than round them
# (benchmarks/RESULTS.md, session 6).
SDF_TOL = {"fp32": 1e-6, "tf32x3": 1e-5, "tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}
GRAD_TOL = {"fp32": 1e-5, "tf32x3": 1e-4, "tf32": 2e-2, "fp16": 2e-2, "bf16": 1e-1}
INPUT_GRAD_TOL = {"fp32": 1e-6, "tf32x3": 1e-5, "tf32": 2e-2, "fp16": 5e-3, "bf16": 1e-1}


def _per_shape(params, x, fn):
    """Apply fn(params [7553], x [N, 3]) to one network, or to each of a stack [S, 7553] / [S, N, 3]."""
    if params.dim() == 1:
        return fn(params, x)
    outs = [fn(p, xs) for p, xs in zip(params, x)]
    return tuple(torch.stack(o) for o in zip(*outs)) if isinstance(outs[0], tuple) else torch.stack(outs)


def _forward(params, x):
    """The network written out plainly: h = relu(h @ W + b) per hidden layer, tanh on the output."""
    layers = unflatten(params)
    h = x
    for w, b in layers[:-1]:
        h = torch.relu(h @ w + b)
    w, b = layers[-1]
    return torch.tanh(h @ w + b)[:, 0]


def _mlp_forward_numpy(params, x):
    """The same forward in float64 numpy, for tests independent of torch."""
    layers = unflatten(np.asarray(params, dtype=np.float64))
    h = np.asarray(x, dtype=np.float64)
    for w, b in layers[:-1]:
        h = np.maximum(h @ w + b, 0.0)
    w, b = layers[-1]
    return np.tanh(h @ w + b)[:, 0]


def _mlp_forward(params, x):
    """The network's values at x, for one network or a stack of them."""
    return _per_shape(params, x, _forward)


def _mlp_loss_and_grad(params, x, target):
    """(mean |f(x) - target|, its gradient w.r.t. params) by autograd, per network."""
    def one(p, xs, t):
        p = p.detach().clone().requires_grad_(True)
        loss = (_forward(p, xs) - t).abs().mean()
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
        y = _forward(p, xs)
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

# =============================================================================================================
# Decoding references
# =============================================================================================================
# A sphere tracer of the network in plain PyTorch (vectorised over rays, compacting the active rays every step),
# normals by autograd, and networks whose zero level set is known in closed form. The same tracer, in float32,
# is the "PyTorch eager" peer of benchmarks/bench_render.py.


def _sphere_trace(params, origins, directions, *, eps=5e-4, relaxation=1.6, bound_radius=1.0,
                           max_steps=128, dtype=None):
    """Trace rays o + t d (|d| = 1) as csrc/include/nis/trace.h does: start where the ray enters the bounding
    sphere, hit when |f| < eps, miss when leaving it or after max_steps evaluations; over-relaxed steps with
    Keinert et al.'s fallback. Returns (t [N], hit [N] bool, steps [N]) as torch tensors.
    """
    import torch

    dtype = dtype or torch.float64
    o = torch.as_tensor(origins, dtype=dtype)
    d = torch.as_tensor(directions, dtype=dtype)
    device = o.device
    p = torch.as_tensor(params, dtype=dtype, device=device)
    n = len(o)
    b = (o * d).sum(1)
    disc = b * b - ((o * o).sum(1) - bound_radius ** 2)
    s = disc.clamp(min=0).sqrt()
    t = (-b - s).clamp(min=0)
    t_out = -b + s
    hit = torch.zeros(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.int64, device=device)
    omega = torch.full((n,), float(relaxation), dtype=dtype, device=device)
    sign = torch.ones(n, dtype=dtype, device=device)
    prev_radius = torch.zeros(n, dtype=dtype, device=device)
    step = torch.zeros(n, dtype=dtype, device=device)
    active = torch.nonzero((disc >= 0) & (t_out > t)).squeeze(1)
    for i in range(max_steps):
        if len(active) == 0:
            break
        a = active
        f = _forward(p, o[a] + d[a] * t[a, None])
        steps[a] = i + 1
        if i == 0:
            sign[a] = torch.where(f < 0, -1.0, 1.0).to(dtype)
        radius = f.abs()
        fail = (omega[a] > 1) & (radius + prev_radius[a] < step[a])
        # Overshoot: back to the last safe point plus its plain step, no more relaxation.
        t[a] = torch.where(fail, t[a] + prev_radius[a] - step[a], t[a])
        step[a] = torch.where(fail, prev_radius[a], step[a])
        omega[a] = torch.where(fail, torch.ones_like(radius), omega[a])
        converged = ~fail & (radius < eps)
        hit[a] = converged
        go = ~fail & ~converged
        new_step = sign[a] * f * omega[a]
        step[a] = torch.where(go, new_step, step[a])
        prev_radius[a] = torch.where(go, radius, prev_radius[a])
        t[a] = torch.where(go, t[a] + new_step, t[a])
        left = go & (t[a] > t_out[a])
        active = a[fail | (go & ~left)]
    return t, hit, steps


def _sdf_gradient(params, points, dtype=None):
    """df/dx of the network at points [N, 3] by torch autograd."""
    import torch

    x = torch.as_tensor(points, dtype=dtype or torch.float64).clone().requires_grad_(True)
    f = _forward(torch.as_tensor(params, dtype=x.dtype), x)
    (g,) = torch.autograd.grad(f.sum(), x)
    return g


def _render(params, width, height, camera, **trace_settings):
    """(depth [H, W] (inf on a miss), normals [H, W, 3] (0 on a miss), hit [H, W]) in float64 numpy."""
    o, d = camera.rays(width, height)
    t, hit, _ = _sphere_trace(params, o, d, **trace_settings)
    t, hit = t.numpy(), hit.numpy()
    normals = np.zeros_like(o)
    if hit.any():
        g = _sdf_gradient(params, o[hit] + d[hit] * t[hit, None]).numpy()
        normals[hit] = g / np.linalg.norm(g, axis=1, keepdims=True)
    depth = np.where(hit, t, np.inf)
    return depth.reshape(height, width), normals.reshape(height, width, 3), hit.reshape(height, width)


def _marching_cubes(volume, level=0.0):
    """(vertices [V, 3], faces [F, 3]) of the level set of a dense volume by scikit-image's classic
    (Lorensen) marching cubes, in index coordinates, with its default gradient_direction="descent"
    (faces wind outwards for an SDF). scikit-image is imported here, only by the tests that use it."""
    from skimage.measure import marching_cubes

    vertices, faces, _, _ = marching_cubes(volume, level, method="lorensen")
    return vertices, faces


def box_network(half_extent: float, rotation=None) -> np.ndarray:
    """Flat params whose network is EXACTLY f(x) = tanh(max_a |(R x)_a| - half_extent): a cube (rotated by R),
    with an L-infinity distance (1-Lipschitz, never above the Euclidean distance outside, so sphere tracing it is
    safe). ReLU layers build |u| = relu(u) + relu(-u) and max(a, b) = b + relu(a - b); other weights are zero.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    layers = [(np.zeros((fi, fo)), np.zeros(fo)) for fi, fo in LAYER_SIZES]

    def unit(layer, src, dst, weight=1.0):
        layers[layer][0][src, dst] += weight

    for a in range(3):  # layer 0: relu(+(R x)_a), relu(-(R x)_a)
        layers[0][0][:, 2 * a] = rot[a]
        layers[0][0][:, 2 * a + 1] = -rot[a]
    for a in range(3):  # layer 1: |X|, |Y|, |Z|
        unit(1, 2 * a, a)
        unit(1, 2 * a + 1, a)
    unit(2, 0, 0), unit(2, 1, 0, -1.0), unit(2, 1, 1), unit(2, 2, 2)   # relu(|X| - |Y|), |Y|, |Z|
    unit(3, 0, 0), unit(3, 1, 0), unit(3, 2, 1)                        # m = max(|X|, |Y|), |Z|
    unit(4, 0, 0), unit(4, 1, 0, -1.0), unit(4, 1, 1)                  # relu(m - |Z|), |Z|
    unit(5, 0, 0), unit(5, 1, 0)                                       # max(m, |Z|)
    unit(6, 0, 0), unit(7, 0, 0)                                       # pass through
    unit(8, 0, 0)
    layers[8][1][0] = -half_extent
    params = np.zeros(N_PARAMS, dtype=np.float64)
    for (fan_in, fan_out), (w_off, b_off), (w, b) in zip(LAYER_SIZES, OFFSETS, layers):
        params[w_off:w_off + fan_in * fan_out] = w.reshape(-1)
        params[b_off:b_off + fan_out] = b
    return params.astype(np.float32)


def ray_box_reference(origins, directions, half_extent: float, rotation=None):
    """Closed-form first hit of rays on the cube of `box_network` (slab method in the cube's frame):
    (t [N] (inf on a miss), outward normals [N, 3] (0 on a miss), cos of the incidence angle [N])."""
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    o = np.asarray(origins, dtype=np.float64) @ rot.T
    d = np.asarray(directions, dtype=np.float64) @ rot.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half_extent - o) / d, (half_extent - o) / d
    t_near = np.nanmax(np.minimum(t1, t2), axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (t_near <= t_far) & (t_near > 0)
    t = np.where(hit, t_near, np.inf)
    p = o + d * np.where(hit, t_near, 0.0)[:, None]
    axis = np.argmax(np.abs(p), axis=1)
    n_local = np.zeros_like(p)
    n_local[np.arange(len(p)), axis] = np.sign(p[np.arange(len(p)), axis])
    n_local[~hit] = 0.0
    cos = np.abs((n_local * d).sum(1))
    return t, n_local @ rot, cos


def keras_h5_params(path) -> np.ndarray:
    """Flat params from one of the paper's Keras .h5 files (Dense layers in file order), for tests/benchmarks."""
    import h5py

    parts = []
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        for name in names:
            group = f[name][name]
            parts += [np.asarray(group["kernel:0"]).reshape(-1), np.asarray(group["bias:0"])]
    params = np.concatenate(parts).astype(np.float32)
    if params.shape != (N_PARAMS,):
        raise ValueError(f"{path}: {params.shape[0]} weights, expected {N_PARAMS}")
    return params