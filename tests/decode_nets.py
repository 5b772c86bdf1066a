"""Networks for the decoding tests: random (Glorot weights, random biases so the zero set is a curved surface
inside the unit cube), an exact rotated cube, and the paper's released car (if ../shared is there)."""
import numpy as np
import pytest

from reference import box_network, keras_h5_params
from nis_fast.core.layout import LAYER_SIZES, OFFSETS, glorot_uniform
from reference import _mlp_forward_numpy as forward_numpy
from tests.conftest import PAPER_WEIGHTS


def random_net(seed: int) -> np.ndarray:
    """Glorot weights x1.5 (so |grad f| is O(1) after eight layers), random biases, and the output bias chosen so
    that about 30% of the ball of radius 0.5 is inside: a curved, closed-ish random surface."""
    rng = np.random.default_rng(seed)
    params = glorot_uniform(seed).astype(np.float64)
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        params[w:w + fan_in * fan_out] *= 1.5
        params[b:b + fan_out] = rng.uniform(-0.2, 0.2, fan_out)
    x = rng.uniform(-1, 1, (4000, 3))
    x = x[np.linalg.norm(x, axis=1) < 0.5]
    logits = np.arctanh(np.clip(forward_numpy(params, x), -0.999999, 0.999999))
    params[OFFSETS[-1][1]] -= np.percentile(logits, 30)
    return params.astype(np.float32)


def rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def points(n, seed=0):
    """n float32 points uniform in [-1.2, 1.2]^3 (a little beyond the unit cube the networks live in)."""
    return np.random.default_rng(seed).uniform(-1.2, 1.2, (n, 3)).astype(np.float32)


BOX_HALF = 0.43
BOX_ROTATION = rotation(3)


def box_net() -> np.ndarray:
    return box_network(BOX_HALF, BOX_ROTATION)


def car_net() -> np.ndarray:
    path = PAPER_WEIGHTS / "car_1.h5"
    if not path.exists():
        pytest.skip(f"paper weights not found at {path}")
    return keras_h5_params(path)
