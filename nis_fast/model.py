"""NeuralSDF: one fitted shape = 7553 parameters + the normalisation transform + metadata."""
from __future__ import annotations

import os

import numpy as np
import torch

from . import decode, io
from .core.arrays import device_of
from .core.layout import N_PARAMS
from .core.normalization import IDENTITY, Normalization
from .ops.mlp import eval_sdf, mlp_forward_torch
from .ops.native import cuda_available

_EVAL_CHUNK = 1 << 18  # rows per forward pass: bounds memory to ~40 MB of activations


class NeuralSDF:
    """A weight-encoded neural implicit shape.

    params    flat float32 torch tensor of 7553 values (layout: nis_fast.core.layout)
    transform core.normalization.Normalization taking world coordinates to the unit frame the network was fitted in
    metadata  dict: recipe, source mesh hash, metrics, notes, ...
    """

    def __init__(self, params, transform: Normalization = IDENTITY, metadata: dict | None = None):
        params = torch.as_tensor(params).detach()
        if params.shape != (N_PARAMS,):
            raise ValueError(f"NeuralSDF: expected {N_PARAMS} parameters, got shape {tuple(params.shape)}")
        if not torch.isfinite(params).all():
            raise ValueError("NeuralSDF: parameters contain NaN or infinite values")
        self.params = params.to(torch.float32).contiguous()
        self.transform = transform
        self.metadata = dict(metadata or {})

    @property
    def device(self) -> torch.device:
        return self.params.device

    def to(self, device) -> "NeuralSDF":
        """A NeuralSDF with its parameters on `device` (same transform and metadata)."""
        return NeuralSDF(self.params.to(device), self.transform, self.metadata)

    def __repr__(self):
        src = (self.metadata.get("source") or {}).get("name", "?")
        return f"NeuralSDF(source={src}, device={self.device}, scale={self.transform.scale:.4g})"

    def sdf(self, points, space: str = "world"):
        """Signed distances at points (..., 3): numpy in -> numpy out, torch in -> torch out (its device).

        space="unit": points and distances in the normalised frame the network was fitted in;
        space="world": points in mesh coordinates, distances scaled back to mesh units.
        Gradients flow when a torch input requires them.
        """
        if space not in ("world", "unit"):
            raise ValueError(f"space must be 'world' or 'unit', got {space!r}")
        device_of(points)  # numpy array or torch tensor, else a TypeError
        as_numpy = isinstance(points, np.ndarray)
        p = torch.from_numpy(np.ascontiguousarray(points)) if as_numpy else points
        if p.shape[-1:] != (3,):
            raise ValueError(f"points must have shape (..., 3), got {tuple(p.shape)}")
        batch_shape = p.shape[:-1]
        p = p.reshape(-1, 3).to(self.device)
        if space == "world":
            # In float64: world coordinates far from the origin lose the shape's detail in float32.
            center = torch.as_tensor(self.transform.center, dtype=torch.float64, device=self.device)
            p = (p.double() - center) * self.transform.scale
        p = p.float()
        if len(p) == 0:
            d = p.new_zeros(0)
        elif not p.requires_grad and (p.device.type == "cpu" or cuda_available()):
            d = eval_sdf(self.params, p)  # the decoders' own forward (csrc/include/nis/mlp.h)
        else:  # gradients asked for, or a CUDA tensor with a native module built without CUDA
            d = torch.cat([mlp_forward_torch(self.params, c) for c in p.split(_EVAL_CHUNK)])
        if space == "world":
            d = d / self.transform.scale
        d = d.reshape(batch_shape)
        return d.detach().cpu().numpy() if as_numpy else d.to(points.device)

    def save(self, path, dtype: str = "float32", compact: bool = False):
        """Write .nis (dtype float32, float16 or int8) or Keras .h5 (float32), chosen by the extension; atomic.
        int8 rounds the weights (nis_fast.core.quantize); fit with FitConfig(quantize_epochs=...) first for
        weights that lose nothing to it. compact: leave out the optional metadata (recipe, source, metrics,
        notes: ~0.8 kB), for files counted in bytes."""
        io.save(path, self.params, self.transform, {} if compact else self.metadata, dtype=dtype)

    def render(self, width: int = 512, height: int = 512, camera=None, **opts) -> np.ndarray:
        """(height, width, 3) uint8 image by sphere tracing, in the unit frame (nis_fast.decode.render)."""
        return decode.render(self.params, width, height, camera=camera, **opts)

    def to_mesh(self, resolution: int = 256, **opts):
        """Marching-cubes mesh of the zero level set, in world coordinates (trimesh.Trimesh);
        opts go to nis_fast.decode.to_mesh."""
        import trimesh

        vertices, faces = decode.to_mesh(self.params, resolution=resolution, **opts)
        vertices = self.transform.to_world(np.asarray(vertices, dtype=np.float64))
        return trimesh.Trimesh(vertices, np.asarray(faces), process=False)


def load(path) -> NeuralSDF:
    """A NeuralSDF from a .nis or Keras .h5 file (chosen by extension), fully validated."""
    params, transform, metadata = io.read(path)
    metadata["loaded_from"] = os.fspath(path)
    return NeuralSDF(params, transform, metadata)
