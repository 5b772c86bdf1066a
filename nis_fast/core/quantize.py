"""Weights stored in fewer bits: symmetric per-output-channel quantization of the network's layout.

Each Dense layer's kernel W [fan_in, fan_out] gets one scale per output unit j (the largest |W[:, j]|
over qmax, stored as float16), and its entries become integers in [-qmax, qmax] with qmax = 2^(bits-1) - 1;
the biases stay float16 (257 values: quantizing them with their unit's scale costs more accuracy than
it saves bytes). A per-unit scale follows each unit's own range, which a single scale per tensor
cannot: benchmarks/RESULTS.md compares the two.

`fake_quantize` is the same rounding as a differentiable-by-straight-through torch function, for
quantization-aware fine-tuning (nis_fast.fit.finetune_quantized).
"""
from __future__ import annotations

import numpy as np
import torch

from .layout import LAYER_SIZES, N_PARAMS, OFFSETS

N_WEIGHTS = sum(fan_in * fan_out for fan_in, fan_out in LAYER_SIZES)  # the kernels: 7296 values
N_UNITS = sum(fan_out for _, fan_out in LAYER_SIZES)  # 257 output units: one scale and one bias each


def qmax(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"quantization: bits must be 2..8, got {bits}")
    return 2 ** (bits - 1) - 1


def _codes(kernel: torch.Tensor, bits: int):
    """(integer codes, scales) of a kernel [..., fan_in, fan_out]: one scale per output unit, rounded to
    float16 first so that the stored scale is the one the codes were made with (an all-zero unit gets
    scale 1: its codes are 0 whatever the scale)."""
    q = qmax(bits)
    scale = (kernel.abs().amax(dim=-2, keepdim=True) / q).half().to(kernel.dtype)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(kernel / scale), -q, q), scale


def quantize(params, bits: int = 8) -> dict:
    """{"weights": int8 [7296] (every layer's W, row-major, in layout order), "weight_scales": float16 [257],
    "biases": float16 [257]} for a flat float parameter vector."""
    p = torch.as_tensor(np.asarray(params, dtype=np.float64))
    if p.shape != (N_PARAMS,) or not bool(torch.isfinite(p).all()):
        raise ValueError(f"quantize: expected {N_PARAMS} finite parameters, got shape {tuple(p.shape)}")
    weights, scales, biases = [], [], []
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        codes, scale = _codes(p[w:w + fan_in * fan_out].reshape(fan_in, fan_out), bits)
        weights.append(codes.to(torch.int8).reshape(-1))
        scales.append(scale.reshape(-1).half())
        biases.append(p[b:b + fan_out])
    bias16, scale16 = torch.cat(biases).half(), torch.cat(scales)
    if not bool(torch.isfinite(bias16).all()):
        raise ValueError("quantize: a bias is beyond float16's range")
    if not bool(torch.isfinite(scale16).all()):
        raise ValueError(f"quantize: a weight is beyond int8 x float16's range ({qmax(bits)} x 65504)")
    return {"weights": torch.cat(weights).numpy(), "weight_scales": scale16.numpy(), "biases": bias16.numpy()}


def dequantize(tensors: dict) -> np.ndarray:
    """The flat float32 parameters of quantize()'s tensors."""
    params = np.empty(N_PARAMS, dtype=np.float32)
    wi = ui = 0
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        n = fan_in * fan_out
        kernel = tensors["weights"][wi:wi + n].reshape(fan_in, fan_out).astype(np.float32)
        params[w:w + n] = (kernel * tensors["weight_scales"][ui:ui + fan_out].astype(np.float32)).reshape(-1)
        params[b:b + fan_out] = tensors["biases"][ui:ui + fan_out].astype(np.float32)
        wi, ui = wi + n, ui + fan_out
    return params


def fake_quantize(params: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """params rounded as quantize() stores them (weights on their unit's grid, biases in float16), with a
    straight-through gradient (d out / d params = 1), for [7553] or [S, 7553]."""
    out = params.clone()
    lead = params.shape[:-1]
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        kernel = params[..., w:w + fan_in * fan_out].reshape(*lead, fan_in, fan_out)
        codes, scale = _codes(kernel.detach(), bits)
        out[..., w:w + fan_in * fan_out] = (kernel + (codes * scale - kernel).detach()).reshape(*lead, -1)
        bias = params[..., b:b + fan_out]
        out[..., b:b + fan_out] = bias + (bias.half().to(params.dtype) - bias).detach()
    return out
