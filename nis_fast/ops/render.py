"""sphere_trace: one image of the network's zero level set, one ray per pixel.

Kernel: csrc/include/nis/trace.h (the tracer and the shading, written once, evaluating the network by
csrc/include/nis/mlp.h), run by csrc/cpu/decode.cpp (OpenMP) or csrc/cuda/decode.cu.
Twins: tests/reference.py `_sphere_trace` (the same steps in plain torch) and `_render` (depth, normals and
hits from it). Test: tests/test_render.py.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.arrays import data_ptr, stream_ptr
from .mlp import params_on
from .native import native

# What the tracer takes, as the native structs: built with keyword arguments, every field required.
PinholeCamera = native.PinholeCamera    # eye, forward, right, up (3-vectors: pixel rays are forward + u right + v up), width, height
TraceSettings = native.TraceSettings    # eps, relaxation, bound_radius, max_steps
ShadeSettings = native.ShadeSettings    # mode, light, albedo, background, ambient, ao_samples, ao_step, depth_near, depth_far


def sphere_trace(params, device: str, camera, trace, shade, with_buffers: bool):
    """(image (H, W, 3) uint8, depth (H, W) float32, normals (H, W, 3) float32, hit (H, W) bool) as numpy
    arrays, traced on `device` ('cpu' or 'cuda'); depth, normals and hit are None unless with_buffers."""
    p = params_on(params, device)
    size = (camera.height, camera.width)
    if device == "cuda":
        new = lambda s, dt: torch.empty(s, dtype=getattr(torch, dt), device="cuda")  # noqa: E731
    else:
        new = lambda s, dt: np.empty(s, dtype=dt)  # noqa: E731
    image = new(size + (3,), "uint8")
    buffers = (new(size, "float32"), new(size + (3,), "float32"), new(size, "uint8")) if with_buffers else (None,) * 3
    native.render(device, data_ptr(p), camera, trace, shade,
                  *(0 if b is None else data_ptr(b) for b in (image, *buffers)), stream_ptr(device))
    image, depth, normals, hit = (b if b is None or isinstance(b, np.ndarray) else b.cpu().numpy()
                                  for b in (image, *buffers))
    return image, depth, normals, None if hit is None else hit.astype(bool)
