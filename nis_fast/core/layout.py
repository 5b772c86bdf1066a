"""The network of Davies et al. (2020), defined once: layer sizes, the flat
7553-value parameter layout and Glorot-uniform init.

Layout of the flat vector (Keras order, layer by layer): for each Dense layer,
its kernel W stored as [fan_in, fan_out] row-major (y = x @ W + b), then its bias b.
Every backend (the torch path, the Triton kernels, the C++/CUDA decoder, the
exported C/GLSL source, the Keras .h5 reader/writer) uses this one layout; the
C++ header's copy (csrc/include/nis/mlp.h) is compared with it by tests/test_layers.py.
"""
from __future__ import annotations

import numpy as np

INPUT_DIM = 3
HIDDEN = 32
N_HIDDEN_LAYERS = 8  # 3->32 then seven 32->32: eight ReLU layers
OUTPUT_DIM = 1
LAYER_SIZES = [(INPUT_DIM, HIDDEN)] + [(HIDDEN, HIDDEN)] * (N_HIDDEN_LAYERS - 1) + [(HIDDEN, OUTPUT_DIM)]


def _offsets():
    out, o = [], 0
    for fan_in, fan_out in LAYER_SIZES:
        w = o
        o += fan_in * fan_out
        b = o
        o += fan_out
        out.append((w, b))
    return out, o


# (weight offset, bias offset) per layer, and the total: 128 + 7*1056 + 33 = 7553.
OFFSETS, N_PARAMS = _offsets()
assert N_PARAMS == 7553


def unflatten(params):
    """[(W [fan_in, fan_out], b [fan_out])] views into a flat numpy array or torch tensor."""
    layers = []
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        layers.append((params[w:w + fan_in * fan_out].reshape(fan_in, fan_out), params[b:b + fan_out]))
    return layers


def flatten(layers):
    """Inverse of unflatten, for numpy (W, b) pairs: one float array of N_PARAMS values."""
    parts = []
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, layers):
        w, b = np.asarray(w), np.asarray(b)
        if w.shape != (fan_in, fan_out) or b.shape != (fan_out,):
            raise ValueError(f"layer shapes {w.shape}, {b.shape} do not match ({fan_in}, {fan_out}), ({fan_out},)")
        parts += [w.reshape(-1), b]
    return np.concatenate(parts)


def is_bias() -> np.ndarray:
    """[N_PARAMS] bool: True where the flat vector holds a bias."""
    mask = np.zeros(N_PARAMS, dtype=bool)
    for (_, fan_out), (_, b) in zip(LAYER_SIZES, OFFSETS):
        mask[b:b + fan_out] = True
    return mask


def glorot_uniform(seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Keras' default init: W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)); biases zero."""
    rng = np.random.default_rng(seed)
    params = np.zeros(N_PARAMS, dtype=np.float64)
    for (fan_in, fan_out), (w, _) in zip(LAYER_SIZES, OFFSETS):
        a = np.sqrt(6.0 / (fan_in + fan_out))
        params[w:w + fan_in * fan_out] = rng.uniform(-a, a, size=fan_in * fan_out)
    return params.astype(dtype)
