"""Decoding a network into distances, images and meshes, in the UNIT frame.

The shape lies inside the sphere of radius 0.9 at the origin; queries live in
[-1, 1]^3. Every function takes the flat 7553-value parameter vector of
`nis_fast.core.layout` (numpy array or torch tensor) and runs the native code:
the network is evaluated one point at a time by csrc/include/nis/mlp.h, rays are
sphere traced by csrc/include/nis/trace.h and cells are triangulated by
csrc/include/nis/mcubes.h, on the CPU (OpenMP) or on a CUDA GPU (same headers).

- `eval_sdf(params, points, with_grad=False)`: network values (and gradients).
- `render(params, width, height, camera)`: an (H, W, 3) uint8 image;
  `render_buffers(...)` also gives depth, normals and the hit mask.
- `to_mesh(params, resolution)`: narrow-band (sparse) marching cubes; the same
  triangles as dense marching cubes wherever the band covers the surface.
- `marching_cubes(volume, level)`: the native marching cubes on a dense grid,
  equal to `skimage.measure.marching_cubes(volume, level, method="lorensen")`
  (gradient_direction="descent", its default) up to vertex/face order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .core.files import atomic_write
from .ops.marching_cubes import extract_cells, marching_cubes
from .ops.mlp import eval_sdf
from .ops.native import resolve_device
from .ops.render import PinholeCamera, ShadeSettings, TraceSettings, sphere_trace

__all__ = ["Camera", "RenderBuffers", "eval_sdf", "render", "render_buffers", "save_png", "grid_points", "sdf_grid",
           "marching_cubes", "narrow_band_cells", "to_mesh"]

SHADING_MODES = {"lambert": 0, "normals": 1, "depth": 2}
BOUND_RADIUS = 1.0  # rays are traced inside this sphere; the shape lies within 0.9
DEFAULT_FOV_DEGREES = 40.0


def _framing_distance(fov_degrees: float) -> float:
    """Distance from which a camera with this vertical fov sees the whole unit sphere."""
    return BOUND_RADIUS / math.sin(math.radians(fov_degrees) / 2.0)


def _orbit_eye(azimuth_degrees: float, elevation_degrees: float, distance: float) -> tuple:
    az, el = math.radians(azimuth_degrees), math.radians(elevation_degrees)
    return (distance * math.cos(el) * math.sin(az), distance * math.sin(el), distance * math.cos(el) * math.cos(az))


@dataclass(frozen=True)
class Camera:
    """Look-at pinhole camera in the unit frame; fov_degrees is the vertical field of view.

    The default looks at the origin from 30 deg azimuth, 20 deg elevation (y up),
    just far enough for the unit sphere to fill the frame's height.
    """

    eye: tuple = field(default_factory=lambda: _orbit_eye(30.0, 20.0, _framing_distance(DEFAULT_FOV_DEGREES)))
    target: tuple = (0.0, 0.0, 0.0)
    up: tuple = (0.0, 1.0, 0.0)
    fov_degrees: float = DEFAULT_FOV_DEGREES

    @classmethod
    def orbit(cls, azimuth_degrees=30.0, elevation_degrees=20.0, distance=None, fov_degrees=DEFAULT_FOV_DEGREES,
              up=(0.0, 1.0, 0.0)) -> "Camera":
        """Camera on a sphere around the origin (azimuth about +y from +z); distance None frames the unit sphere."""
        distance = _framing_distance(fov_degrees) if distance is None else float(distance)
        return cls(eye=_orbit_eye(azimuth_degrees, elevation_degrees, distance), up=tuple(up), fov_degrees=fov_degrees)

    def basis(self, width: int, height: int):
        """(eye, forward, right, up) with right/up scaled so that pixel rays are forward + u*right + v*up, u,v in [-1,1]."""
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (self.eye, self.target, self.up))
        if eye.shape != (3,) or target.shape != (3,) or up.shape != (3,):
            raise ValueError("Camera: eye, target and up must be 3-vectors")
        if not np.all(np.isfinite(np.concatenate([eye, target, up]))):
            raise ValueError("Camera: eye, target and up must be finite")
        if not 0.0 < self.fov_degrees < 180.0:
            raise ValueError(f"Camera: fov_degrees must be in (0, 180), got {self.fov_degrees}")
        forward = target - eye
        if np.linalg.norm(forward) == 0.0:
            raise ValueError("Camera: eye and target coincide")
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up)
        if np.linalg.norm(right) < 1e-9:
            raise ValueError("Camera: up is parallel to the viewing direction")
        right /= np.linalg.norm(right)
        true_up = np.cross(right, forward)
        tan_half = math.tan(math.radians(self.fov_degrees) / 2.0)
        return eye, forward, right * tan_half * width / height, true_up * tan_half

    def rays(self, width: int, height: int):
        """Origins and unit directions [H*W, 3] (float64, row-major from the top-left pixel): the native camera's rays."""
        eye, forward, right, up = self.basis(width, height)
        u = 2.0 * (np.arange(width) + 0.5) / width - 1.0
        v = 1.0 - 2.0 * (np.arange(height) + 0.5) / height
        d = forward + u[None, :, None] * right + v[:, None, None] * up
        d = d.reshape(-1, 3)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return np.broadcast_to(eye, d.shape).copy(), d


@dataclass
class RenderBuffers:
    """What `render_buffers` returns (numpy, row-major from the top-left pixel)."""

    image: np.ndarray   # (H, W, 3) uint8
    depth: np.ndarray   # (H, W) float32, distance along the unit ray direction; inf where the ray missed
    normals: np.ndarray  # (H, W, 3) float32, unit gradient direction (outward); 0 where missed
    hit: np.ndarray     # (H, W) bool


def _render(params, width, height, camera, device, background, shading, max_steps, eps, relaxation, light, albedo,
            ambient, ao_samples, ao_step, buffers: bool):
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise ValueError(f"nis_fast.decode.render: width and height must be positive integers, got {width}x{height}")
    width, height = int(width), int(height)
    if shading not in SHADING_MODES:
        raise ValueError(f"nis_fast.decode.render: shading must be one of {sorted(SHADING_MODES)}, got {shading!r}")
    if max_steps < 1 or not eps > 0 or not relaxation >= 1.0:
        raise ValueError("nis_fast.decode.render: need max_steps >= 1, eps > 0 and relaxation >= 1")
    background = np.asarray(background, dtype=np.float64)
    if background.shape != (3,) or np.any(background < 0) or np.any(background > 255):
        raise ValueError(f"nis_fast.decode.render: background must be 3 values in [0, 255], got {background}")
    camera = Camera() if camera is None else camera
    eye, forward, right, up = camera.basis(width, height)
    if light is None:  # a headlight from above the viewer's left shoulder
        light = -forward + 0.6 * up / np.linalg.norm(up) - 0.4 * right / np.linalg.norm(right)
    light = np.asarray(light, dtype=np.float64)
    light = light / np.linalg.norm(light)
    dist = float(np.linalg.norm(eye))
    image, depth, normals, hit = sphere_trace(
        params, resolve_device(params, device),
        PinholeCamera(eye=eye, forward=forward, right=right, up=up, width=width, height=height),
        TraceSettings(eps=eps, relaxation=relaxation, bound_radius=BOUND_RADIUS, max_steps=int(max_steps)),
        ShadeSettings(mode=SHADING_MODES[shading], light=light, albedo=np.asarray(albedo, dtype=np.float64),
                      background=background / 255.0, ambient=ambient, ao_samples=int(ao_samples), ao_step=ao_step,
                      depth_near=max(dist - BOUND_RADIUS, 0.0), depth_far=dist + BOUND_RADIUS),
        with_buffers=buffers)
    return RenderBuffers(image, depth, normals, hit) if buffers else image


_RENDER_DOC = """

    params: flat 7553 values (numpy or torch; a CUDA tensor renders on the GPU unless device says otherwise).
    camera: `Camera` (default frames the unit sphere). background: RGB in [0, 255].
    shading: "lambert" (albedo * (ambient + (1 - ambient) * max(0, n.l)), optional ambient occlusion with
    ao_samples SDF samples along the normal), "normals" (n * 0.5 + 0.5) or "depth" (white near, black far).
    Rays are sphere traced inside the unit sphere: hit when |f| < eps, at most max_steps network evaluations,
    steps over-relaxed by `relaxation` with Keinert et al.'s fallback. light: direction towards the light
    (default: a headlight from above-left).
"""


def render(params, width: int = 512, height: int = 512, camera: Camera | None = None, *, device=None,
           background=(255, 255, 255), shading: str = "lambert", max_steps: int = 128, eps: float = 5e-4,
           relaxation: float = 1.6, light=None, albedo=(0.8, 0.8, 0.8), ambient: float = 0.25,
           ao_samples: int = 0, ao_step: float = 0.02) -> np.ndarray:
    return _render(params, width, height, camera, device, background, shading, max_steps, eps, relaxation, light,
                   albedo, ambient, ao_samples, ao_step, buffers=False)


def render_buffers(params, width: int = 512, height: int = 512, camera: Camera | None = None, *, device=None,
                   background=(255, 255, 255), shading: str = "lambert", max_steps: int = 128, eps: float = 5e-4,
                   relaxation: float = 1.6, light=None, albedo=(0.8, 0.8, 0.8), ambient: float = 0.25,
                   ao_samples: int = 0, ao_step: float = 0.02) -> RenderBuffers:
    return _render(params, width, height, camera, device, background, shading, max_steps, eps, relaxation, light,
                   albedo, ambient, ao_samples, ao_step, buffers=True)


render.__doc__ = "Sphere-traced image of the network's zero level set: (H, W, 3) uint8." + _RENDER_DOC
render_buffers.__doc__ = "Like `render`, also returning depth, normals and the hit mask (`RenderBuffers`)." + _RENDER_DOC


def save_png(image, path) -> None:
    """Write an (H, W, 3) or (H, W) uint8 image as PNG, atomically (temporary file in the same folder, then rename)."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"nis_fast.decode.save_png: expected an (H, W[, 3|4]) uint8 image, got {image.dtype} {image.shape}")
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


# ----------------------------------------------------------------------------------------------- meshing

def _node_positions(nodes, h: float):
    """Unit-frame positions of integer grid nodes [N, 3] (torch): the one formula used for dense and sparse grids,
    so that both evaluate the network at bit-identical points."""
    return nodes.to(torch.float32) * h - 1.0


def grid_points(resolution: int) -> np.ndarray:
    """The nodes of the resolution^3 grid over [-1, 1]^3, [R^3, 3] float32 in C order (x slowest)."""
    r = torch.arange(resolution)
    nodes = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    return _node_positions(nodes, 2.0 / (resolution - 1)).numpy()


def sdf_grid(params, resolution: int, *, device=None) -> np.ndarray:
    """The network on every node of the resolution^3 grid over [-1, 1]^3: volume[i, j, k] at x_i, y_j, z_k."""
    device = resolve_device(params, device)
    pts = grid_points(resolution)
    if device == "cuda":
        return eval_sdf(params, torch.from_numpy(pts).cuda()).cpu().numpy().reshape((resolution,) * 3)
    return eval_sdf(params, pts).reshape((resolution,) * 3)


_CHILD_OFFSETS = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)


def narrow_band_cells(params, resolution: int, *, level: float = 0.0, safety: float = 2.0, device=None,
                      coarse: int = 32):
    """Cells [M, 3] (int64 low-corner indices) of the resolution^3 grid whose |f - level| at the centre is below
    safety * their half-diagonal, found by refining an octree from a coarse grid of at most `coarse` nodes per axis.

    A cell that the surface crosses has |f(centre) - level| <= L * half-diagonal when the network is
    L-Lipschitz, and so does every octree node containing it: with safety >= L no such cell is lost.
    """
    device = resolve_device(params, device)
    n_cells = resolution - 1
    h = 2.0 / n_cells
    size = 1
    while (n_cells + size - 1) // size > coarse:
        size *= 2
    per_axis = (n_cells + size - 1) // size
    r = torch.arange(per_axis, device=device)
    nodes = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    offsets = torch.from_numpy(_CHILD_OFFSETS).to(device)
    while True:
        centres = (nodes.to(torch.float32) + 0.5) * (size * h) - 1.0
        f = eval_sdf(params, centres)
        nodes = nodes[(f - level).abs() <= safety * (math.sqrt(3.0) / 2.0) * size * h]
        if size == 1:
            return nodes
        size //= 2
        nodes = (nodes[:, None, :] * 2 + offsets[None]).reshape(-1, 3)
        nodes = nodes[(nodes * size < n_cells).all(dim=1)]


def to_mesh(params, resolution: int = 256, *, device=None, level: float = 0.0, safety: float = 2.0):
    """Narrow-band marching cubes of the network's `level` set on the resolution^3 grid over [-1, 1]^3.

    Returns (vertices [V, 3] float32 in the unit frame, faces [F, 3] int32), an indexed mesh with one
    vertex per crossed grid edge and outward winding; identical to `marching_cubes(sdf_grid(...))`
    (scaled to the unit frame) wherever the band holds the surface (see `narrow_band_cells`).
    Everything (octree refinement, network evaluations, the three marching-cubes passes, welding) runs on `device`.
    """
    if int(resolution) != resolution or resolution < 2:
        raise ValueError(f"nis_fast.decode.to_mesh: resolution must be an integer >= 2, got {resolution}")
    if not safety > 0:
        raise ValueError(f"nis_fast.decode.to_mesh: safety must be > 0, got {safety}")
    resolution = int(resolution)
    h = 2.0 / (resolution - 1)
    cells = narrow_band_cells(params, resolution, level=level, safety=safety, device=device)
    corners = (cells[:, None, :] + torch.from_numpy(_CHILD_OFFSETS).to(cells.device)[None]).reshape(-1, 3)
    node_keys = torch.unique((corners[:, 0] * resolution + corners[:, 1]) * resolution + corners[:, 2])
    nodes = torch.stack([node_keys // (resolution * resolution), (node_keys // resolution) % resolution,
                         node_keys % resolution], dim=1)
    values = eval_sdf(params, _node_positions(nodes, h))
    cell_keys = (cells[:, 0] * resolution + cells[:, 1]) * resolution + cells[:, 2]
    device = "cuda" if cells.is_cuda else "cpu"
    vertices, faces = extract_cells(values, node_keys, cell_keys, resolution, resolution, level, device)
    vertices, faces = vertices.cpu().numpy(), faces.cpu().numpy()
    return vertices * np.float32(h) - np.float32(1.0), faces
