"""core.quantize against a plain loop: per-output-unit int8 codes and float16 scales, the dequantized
weights within half a step of the originals, fake_quantize (the training-time rounding) equal to what a
file stores, with a straight-through gradient."""
import numpy as np
import pytest
import torch

import nis_fast as nf
from conftest import PAPER_WEIGHTS
from nis_fast.core.layout import LAYER_SIZES, N_PARAMS, OFFSETS, glorot_uniform
from nis_fast.core.quantize import N_UNITS, N_WEIGHTS, dequantize, fake_quantize, quantize


def _loop_quantize(params, qmax=127):
    """Each unit's scale is its largest |weight| / qmax (in float16); each weight rounds to its unit's grid."""
    out = np.array(params, dtype=np.float64)
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):
        for j in range(fan_out):
            column = [out[w + i * fan_out + j] for i in range(fan_in)]
            scale = float(np.float16(max(abs(c) for c in column) / qmax)) or 1.0
            for i, c in enumerate(column):
                out[w + i * fan_out + j] = min(max(round(c / scale), -qmax), qmax) * scale
            out[b + j] = float(np.float16(out[b + j]))
    return out


def test_sizes():
    assert N_WEIGHTS + N_UNITS == N_PARAMS and N_UNITS == sum(fan_out for _, fan_out in LAYER_SIZES)


@pytest.mark.parametrize("seed", [0, 1])
def test_quantize_matches_the_loop(seed):
    params = glorot_uniform(seed).astype(np.float64) + np.random.default_rng(seed).normal(0, 0.05, N_PARAMS)
    params[OFFSETS[2][0]:OFFSETS[2][0] + 32 * 32:32] = 0.0  # one unit with all-zero weights
    tensors = quantize(params)
    assert tensors["weights"].dtype == np.int8 and np.abs(tensors["weights"].astype(int)).max() <= 127
    deq = dequantize(tensors).astype(np.float64)
    np.testing.assert_allclose(deq, _loop_quantize(params), rtol=1e-6, atol=0)
    assert tensors["weight_scales"].astype(np.float64).min() > 0  # the all-zero unit's scale is 1
    for (fan_in, fan_out), (w, b) in zip(LAYER_SIZES, OFFSETS):  # within half a step (plus the scale's rounding)
        kernel, back = (a[w:w + fan_in * fan_out].reshape(fan_in, fan_out) for a in (params, deq))
        step = np.abs(kernel).max(axis=0) / 127
        assert np.all(np.abs(back - kernel) <= 0.5 * step * (1 + 2e-3) + 1e-12)


def test_fake_quantize_is_what_a_file_stores_with_a_straight_through_gradient():
    params = torch.from_numpy(glorot_uniform(3)).double() + 0.01
    stored = dequantize(quantize(params.numpy()))
    x = params.clone().requires_grad_(True)
    fq = fake_quantize(x)
    np.testing.assert_allclose(fq.detach().numpy(), stored, rtol=1e-6, atol=0)
    (fq * torch.arange(N_PARAMS, dtype=fq.dtype)).sum().backward()
    assert torch.equal(x.grad, torch.arange(N_PARAMS, dtype=x.dtype))  # d fq / d x = 1
    stack = torch.stack([params, 2 * params])
    assert torch.allclose(fake_quantize(stack)[1], fake_quantize(2 * params))


def test_per_unit_scales_beat_one_scale_per_layer_on_the_papers_networks():
    """The design choice, checked on the released networks: the network's error after rounding."""
    from reference import _mlp_forward_numpy

    x = np.random.default_rng(0).uniform(-1, 1, (20_000, 3))
    for name in ("car_1.h5", "thingi10k_32770_sf.h5"):
        path = PAPER_WEIGHTS / name
        if not path.exists():
            pytest.skip(f"{path} not found")
        params = nf.load(path).params.numpy().astype(np.float64)
        per_tensor = params.copy()
        for (fan_in, fan_out), (w, _) in zip(LAYER_SIZES, OFFSETS):
            kernel = params[w:w + fan_in * fan_out]
            scale = np.abs(kernel).max() / 127
            per_tensor[w:w + fan_in * fan_out] = np.round(kernel / scale) * scale
        exact = _mlp_forward_numpy(params, x)
        err_unit = np.abs(_mlp_forward_numpy(dequantize(quantize(params)), x) - exact).mean()
        err_tensor = np.abs(_mlp_forward_numpy(per_tensor, x) - exact).mean()
        assert err_unit < 0.8 * err_tensor, (name, err_unit, err_tensor)
