"""Accuracy of a fitted shape against its mesh: the paper's three metrics, in the unit frame.

- surface_error:  mean |f(x)| at points uniform on the surface (f should vanish there);
- grid_l1:        mean |f(x) - d(x)| on a regular grid over [-1, 1]^3 (d: exact signed distance);
- importance_l1:  mean |f(x) - d(x)| at a fresh importance-sampled set (the training distribution).

and the usual geometric comparisons, also in the unit frame:

- chamfer / hausdorff: mean (sum of both directions) / max point-to-surface distance between
  surface samples of the mesh and of the shape's marching-cubes mesh (exact distances to triangles);
- normal_consistency: mean |cos| between the mesh's face normals and the network's gradient at the
  mesh's surface samples;
- iou: volumetric intersection over union at uniform points of the cube (inside = winding number > 1/2
  for the mesh, f < 0 for the shape).

`mesh` is anything load_mesh takes; `sdf_fn` (exact SDF in the unit frame) defaults to
nis_fast.MeshSDF(mesh, space="unit").sdf and may be passed to reuse one BVH.
"""
from __future__ import annotations

import numpy as np
import torch

from .core.normalization import IDENTITY
from .decode import to_mesh
from .mesh import Mesh, load_mesh
from .mesh_sdf import MeshSDF
from .sampling import importance_samples, surface_samples

_CHUNK = 1 << 20


def _mesh(mesh) -> Mesh:
    return mesh if isinstance(mesh, Mesh) else load_mesh(mesh, warn=False)


def _exact_sdf(mesh):
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


def chamfer_hausdorff(shape, mesh, n: int = 100_000, resolution: int = 128, seed: int = 0) -> tuple[float, float]:
    """(Chamfer, Hausdorff) between the mesh and the shape's zero level set (marching cubes at `resolution`)."""
    vertices, faces = shape_mesh_unit(shape, resolution)
    if len(faces) == 0:
        return float("inf"), float("inf")
    found = compare_surfaces(_mesh(mesh), Mesh(vertices, faces, IDENTITY, "<decoded>"), n, seed)
    return found["chamfer"], found["hausdorff"]


def compare_surfaces(reference: Mesh, other: Mesh, n: int = 100_000, seed: int = 0) -> dict:
    """Chamfer (sum of the mean distances both ways), Hausdorff (the largest) and normal consistency (mean
    |cos| between the face normals at each sample and at its closest point on the other surface, both ways)
    between two meshes in the reference's unit frame: `other` is given in that frame already (its own
    transform is ignored). Exact point-to-triangle distances, n samples a side."""
    other = Mesh(other.vertices, other.faces, IDENTITY, other.name)
    a, a_faces = surface_samples(reference, n, seed, return_faces=True)
    b, b_faces = surface_samples(other, n, seed + 1, space="world", return_faces=True)
    a_to_b, _, a_hits = MeshSDF(other, float64=True).closest(a)
    b_to_a, _, b_hits = MeshSDF(reference, space="unit", float64=True).closest(b)

    def normals(vertices, faces):
        tri = vertices[faces]
        nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        return nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-300)

    ref_n, other_n = normals(reference.unit_vertices, reference.faces), normals(other.vertices, other.faces)
    cos_a = np.abs(np.einsum("ij,ij->i", ref_n[a_faces], other_n[np.asarray(a_hits)]))
    cos_b = np.abs(np.einsum("ij,ij->i", other_n[b_faces], ref_n[np.asarray(b_hits)]))
    a_to_b, b_to_a = np.asarray(a_to_b), np.asarray(b_to_a)
    return {"chamfer": float(a_to_b.mean() + b_to_a.mean()), "hausdorff": float(max(a_to_b.max(), b_to_a.max())),
            "normal_consistency": float(0.5 * (cos_a.mean() + cos_b.mean()))}


def shape_mesh_unit(shape, resolution: int):
    """The shape's marching-cubes mesh in the unit frame, as float64 vertices and int32 faces."""
    vertices, faces = to_mesh(shape.params, resolution=resolution)
    return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int32)


def normal_consistency(shape, mesh, n: int = 100_000, seed: int = 0) -> float:
    """Mean |cos| between face normals and the network's gradient at surface samples of the mesh."""
    mesh = _mesh(mesh)
    points = surface_samples(mesh, n, seed)
    faces = np.asarray(MeshSDF(mesh, space="unit", float64=True).closest(points)[2])
    tri = mesh.unit_vertices[mesh.faces[faces]]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    x = torch.from_numpy(points.astype(np.float32)).requires_grad_(True)
    (grad,) = torch.autograd.grad(_unit_sdf(shape, x).sum(), x)
    grad = grad.double().numpy()
    cos = np.einsum("ij,ij->i", normals, grad) / np.maximum(
        np.linalg.norm(normals, axis=1) * np.linalg.norm(grad, axis=1), 1e-300)
    return float(np.abs(cos).mean())


def sign_agreement(shape, mesh, n: int = 100_000, pool_size: int = 1_000_000, beta: float = 60.0,
                   seed: int = 12345, sdf_fn=None) -> float:
    """The share of n fresh importance samples (near the surface, as importance_l1 draws them) where the shape
    and the exact distance have the same sign."""
    sdf_fn = sdf_fn or _exact_sdf(_mesh(mesh))
    points, d = importance_samples(sdf_fn, n, pool_size, beta, seed)
    with torch.no_grad():
        f = _unit_sdf(shape, points)
    return float(((f < 0) == (torch.as_tensor(d) < 0)).double().mean())


def iou(shape, mesh, n: int = 1_000_000, seed: int = 0) -> float:
    """Volumetric IoU at n uniform points of [-1, 1]^3 (mesh inside: winding number > 1/2; shape inside: f < 0)."""
    points = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, size=(n, 3)).astype(np.float32))
    inside_mesh = torch.as_tensor(MeshSDF(_mesh(mesh), space="unit").contains(points))
    with torch.no_grad():
        inside_shape = _unit_sdf(shape, points) < 0
    union = int((inside_mesh | inside_shape).sum())
    return float((inside_mesh & inside_shape).sum()) / union if union else 1.0


def evaluate(shape, mesh, sdf_fn=None, seed: int = 0) -> dict:
    """All metrics in the unit frame: the paper's three (surface_error, grid_l1, importance_l1), then
    chamfer, hausdorff, normal_consistency and iou."""
    mesh = _mesh(mesh)
    sdf_fn = sdf_fn or _exact_sdf(mesh)
    chamfer, hausdorff = chamfer_hausdorff(shape, mesh, seed=seed)
    return {
        "surface_error": surface_error(shape, mesh, seed=seed),
        "grid_l1": grid_l1(shape, mesh, sdf_fn=sdf_fn),
        "importance_l1": importance_l1(shape, mesh, seed=seed + 12345, sdf_fn=sdf_fn),
        "chamfer": chamfer,
        "hausdorff": hausdorff,
        "normal_consistency": normal_consistency(shape, mesh, seed=seed),
        "iou": iou(shape, mesh, seed=seed),
    }
