"""The native CPU training step (csrc/cpu/train.cpp) against torch autograd, Keras' Adam written out and
the PyTorch training path, and the CPU fits that run it."""
import pytest
import torch

import nis_fast as nf
from nis_fast.core import layout as network
from nis_fast.core.adam import adam_step_size
from nis_fast.core.quantize import fake_quantize
from nis_fast.fit import FitConfig, train
from nis_fast.ops.mlp import loss_grad_cpu, train_step_cpu
from reference import _adam_step_, _mlp_loss_and_grad

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HYPER = dict(beta1=0.9, beta2=0.999, eps=1e-7)


def problem(n, seed):
    """Glorot weights with noise, points in the cube, noisy targets near a sphere's distance."""
    g = torch.Generator().manual_seed(seed)
    params = torch.from_numpy(network.glorot_uniform(seed)) + 0.05 * torch.randn(network.N_PARAMS, generator=g)
    x = torch.rand(n, 3, generator=g) * 2 - 1
    target = (x.norm(dim=-1) - 0.5) + 0.1 * torch.randn(n, generator=g)
    return params, x, target


# Sizes around the native tile (64 rows) and chunk (256 rows): one row, partial tiles, partial chunks.
@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 255, 256, 257, 1000, 2048, 4099])
def test_loss_and_gradient_match_autograd(n):
    params, x, target = problem(n, n)
    loss, grad = loss_grad_cpu(params, x, target)
    ref_loss, ref_grad = _mlp_loss_and_grad(params.double(), x.double(), target.double())
    assert abs(loss - ref_loss.item()) <= 1e-6 * ref_loss.item()
    scale = ref_grad.abs().max().item()
    err = (grad.double() - ref_grad).abs().max().item()
    assert err <= 1e-5 * scale, (err, scale)  # float32 sums over up to 4099 rows, against float64 autograd


def test_the_answer_does_not_depend_on_the_thread_count():
    params, x, target = problem(3000, 1)
    results = [loss_grad_cpu(params, x, target, threads=t) for t in (1, 2, 3)]
    for loss, grad in results[1:]:
        assert loss == results[0][0] and torch.equal(grad, results[0][1])


def test_a_step_is_keras_adam_on_the_gradient():
    params, x, target = problem(700, 2)
    g = torch.Generator().manual_seed(5)
    m, v = 0.01 * torch.randn(network.N_PARAMS, generator=g), 1e-4 * torch.rand(network.N_PARAMS, generator=g)
    step, lr = 3, 1e-3
    _, grad = loss_grad_cpu(params, x, target)
    p_ref, m_ref, v_ref = params.double(), m.double(), v.double()
    _adam_step_(p_ref, grad.double(), m_ref, v_ref, step, lr)

    total = train_step_cpu(params, m, v, x, target, alpha=adam_step_size(lr, step, 0.9, 0.999), **HYPER)
    assert abs(total / 700 - loss_grad_cpu(problem(700, 2)[0], x, target)[0]) < 1e-7  # the loss before the step
    assert torch.allclose(m.double(), m_ref, rtol=1e-5, atol=1e-9)
    assert torch.allclose(v.double(), v_ref, rtol=1e-5, atol=1e-12)
    assert torch.allclose(params.double(), p_ref, rtol=0, atol=1e-7)
    assert (params - problem(700, 2)[0]).abs().max() > 1e-4  # it did move


def test_loss_params_and_update_mask():
    """Quantization-aware steps: the gradient is taken at other weights (the int8-rounded ones), and a mask
    keeps the weights still while the biases move."""
    params, x, target = problem(500, 4)
    rounded = fake_quantize(params)
    mask = torch.from_numpy(network.is_bias()).float()
    before = params.clone()
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    total = train_step_cpu(params, m, v, x, target, alpha=1e-3, loss_params=rounded, update_mask=mask, **HYPER)

    loss_at_rounded, grad = loss_grad_cpu(rounded, x, target)
    assert abs(total / 500 - loss_at_rounded) < 1e-7
    assert torch.equal(params[mask == 0], before[mask == 0])
    assert torch.allclose(m, 0.1 * grad * mask, rtol=1e-6, atol=0)
    moved = params[mask == 1] - before[mask == 1]
    assert torch.equal(torch.sign(moved), -torch.sign(grad[mask == 1]))


def test_rows_read_in_place_are_the_gathered_batch():
    """A step through an index (an epoch's shuffle) is the step on the gathered copy, bit for bit."""
    params, x, target = problem(5000, 6)
    rows = torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:1500]
    results = []
    for kwargs in (dict(x=x[rows], target=target[rows]), dict(x=x, target=target, rows=rows)):
        p, m, v = params.clone(), torch.zeros_like(params), torch.zeros_like(params)
        results.append((train_step_cpu(p, m, v, alpha=1e-3, **kwargs, **HYPER), p))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    with pytest.raises(IndexError, match="outside"):
        train_step_cpu(params, torch.zeros_like(params), torch.zeros_like(params), x, target,
                       rows=torch.tensor([0, 5000]), alpha=1e-3, **HYPER)
    with pytest.raises(TypeError, match="int64"):
        train_step_cpu(params, torch.zeros_like(params), torch.zeros_like(params), x, target,
                       rows=rows.int(), alpha=1e-3, **HYPER)


def samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, n, 3, generator=g) * 2 - 1
    return x, (x.norm(dim=-1) - 0.6).clamp(-0.5, 0.5)


def test_whole_epochs_match_the_torch_path():
    """Three epochs of the paper's schedule on the same samples and shuffles, native against TorchLossGrad +
    adam_step_torch: each step differs by float32 rounding only, so the paths stay within a small distance."""
    x, t = samples(6000, 0)
    config = FitConfig(n_samples=6000, epochs=3, batch_size=1000, threads=1)
    runs = {}
    for trainer in ("auto", "torch"):
        params = torch.from_numpy(network.glorot_uniform(0))[None].clone()
        history = train(params, x, t, FitConfig(**{**config.to_dict(), "trainer": trainer}))
        runs[trainer] = params[0], history
    (p_native, h_native), (p_torch, h_torch) = runs["auto"], runs["torch"]
    assert (p_native - p_torch).abs().max() < 2e-5
    for a, b in zip(h_native, h_torch):
        assert abs(a[0] - b[0]) < 1e-5 * b[0]
    assert h_native[-1][0] < 0.75 * h_native[0][0]  # and it trains


@pytest.mark.parametrize("bad, error", [
    (dict(x=torch.zeros(10, 3, dtype=torch.float64)), TypeError),
    (dict(x=torch.zeros(10, 3).numpy()), TypeError),
    (dict(x=torch.zeros(10, 4)), ValueError),
    (dict(x=torch.zeros(3, 10).t()), ValueError),
    (dict(target=torch.zeros(9)), ValueError),
    (dict(x=torch.zeros(0, 3), target=torch.zeros(0)), ValueError),
    (dict(params=torch.zeros(network.N_PARAMS - 1)), ValueError),
    (dict(update_mask=torch.zeros(5)), ValueError),
])
def test_bad_inputs_are_refused(bad, error):
    args = dict(params=torch.zeros(network.N_PARAMS), x=torch.zeros(10, 3), target=torch.zeros(10))
    args.update(bad)
    m, v = torch.zeros(network.N_PARAMS), torch.zeros(network.N_PARAMS)
    with pytest.raises(error, match="training"):
        train_step_cpu(args["params"], m, v, args["x"], args["target"], alpha=1e-3,
                       update_mask=args.get("update_mask"), **HYPER)


def sphere(p):
    return p.norm(dim=-1) - 0.5


def test_cpu_fits_are_the_same_at_any_thread_count():
    config = dict(pool_size=20_000, n_samples=8000, epochs=2, batch_size=1000, lr=2e-3, schedule="cosine")
    shapes = [nf.fit(sphere, nf.FitConfig(**config, threads=t), device="cpu", seed=3) for t in (1, 2)]
    assert shapes[0].metadata["recipe"]["backend"] == "native"
    assert torch.equal(shapes[0].params, shapes[1].params)
