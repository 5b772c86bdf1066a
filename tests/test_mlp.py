"""The network of nis_fast/ops/mlp.py against its plain twins in tests/reference.py: `eval_sdf` (native
values and input gradients) against `_mlp_forward_numpy` (float64 numpy), `_sdf_gradient` (torch
autograd) and the closed-form cube of `box_network`, on the CPU and on CUDA; the CPU training step
`TorchLossGrad` (loss and parameter gradient by a manual backward) against autograd through
`_forward`; and `adam_step_torch` (Keras' Adam) against the textbook update written out in numpy.
The fused Triton versions are tested in test_kernels_mlp.py and test_kernels_adam.py."""
import numpy as np
import pytest
import torch
from decode_nets import BOX_HALF, BOX_ROTATION, box_net, car_net, points, random_net

from nis_fast import decode
from nis_fast.core import layout as network
from nis_fast.ops.mlp import TorchLossGrad, adam_step_torch, mlp_forward_torch
from nis_fast.ops.native import cuda_available
from reference import _forward, _sdf_gradient
from reference import _mlp_forward_numpy as forward_numpy


@pytest.mark.parametrize("make", [lambda: random_net(0), box_net, car_net])
def test_eval_sdf_matches_forward_numpy(make):
    params, x = make(), points(5000)
    np.testing.assert_allclose(decode.eval_sdf(params, x), forward_numpy(params, x), atol=1e-5)


def test_eval_sdf_keeps_the_kind_of_its_input():
    params, x = random_net(1), points(100)
    ref = forward_numpy(params, x)
    out64 = decode.eval_sdf(params, x.astype(np.float64))
    assert isinstance(out64, np.ndarray) and out64.dtype == np.float64
    out_t = decode.eval_sdf(torch.from_numpy(params), torch.from_numpy(x))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), ref, atol=1e-5)
    assert decode.eval_sdf(params, np.zeros((0, 3), np.float32)).shape == (0,)


@pytest.mark.parametrize("make", [lambda: random_net(0), box_net, car_net])
def test_torch_forward_matches_the_twins(make):
    """mlp_forward_torch (the one torch forward: NeuralSDF's autograd path, and TorchLossGrad's forward)
    in float64: its values are the numpy twin's and its autograd input gradient the plain twin's."""
    params, x = make(), points(2000, seed=3)
    xs = torch.from_numpy(x).double().requires_grad_(True)
    f = mlp_forward_torch(torch.from_numpy(params).double(), xs)
    (g,) = torch.autograd.grad(f.sum(), xs)
    np.testing.assert_allclose(f.detach().numpy(), forward_numpy(params, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.numpy(), _sdf_gradient(params, x).numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: random_net(0), car_net])
def test_analytic_gradient_matches_autograd(make):
    params, x = make(), points(3000, seed=2)
    f, g = decode.eval_sdf(params, x, with_grad=True)
    np.testing.assert_allclose(f, forward_numpy(params, x), atol=1e-5)
    ref = _sdf_gradient(params, x).numpy()
    np.testing.assert_allclose(g, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_box_network_is_exact():
    x = points(2000, seed=3)
    exact = np.tanh(np.abs(x.astype(np.float64) @ BOX_ROTATION.T).max(axis=1) - BOX_HALF)
    np.testing.assert_allclose(decode.eval_sdf(box_net(), x), exact, atol=1e-6)


@pytest.mark.usefixtures("one_torch_thread")  # as in test_fit.py: one torch thread on a small shared machine
@pytest.mark.parametrize("n", [1, 7, 300, 1024])
def test_manual_gradient_matches_autograd(n):
    g = torch.Generator().manual_seed(n)
    params = torch.from_numpy(network.glorot_uniform(n)) + 0.05 * torch.randn(network.N_PARAMS, generator=g)
    x = torch.rand(n, 3, generator=g) * 2 - 1
    target = (x.norm(dim=-1) - 0.5) + 0.1 * torch.randn(n, generator=g)
    loss, grad = TorchLossGrad(1024, "cpu")(params, x, target)

    p = params.clone().requires_grad_()
    ref = (_forward(p, x) - target).abs().mean()
    ref.backward()
    assert torch.allclose(loss, ref.detach(), rtol=1e-6, atol=0)
    assert torch.allclose(grad, p.grad, rtol=1e-4, atol=1e-7), (grad - p.grad).abs().max()


@pytest.mark.usefixtures("one_torch_thread")  # as in test_fit.py: one torch thread on a small shared machine
def test_keras_adam_matches_textbook_adam_when_eps_vanishes():
    """Keras and Kingma & Ba place eps differently; with eps -> 0 both are the same update."""
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=500)
    grads = [rng.normal(size=500) for _ in range(5)]
    ours, m, v = torch.tensor(p0, dtype=torch.float32), torch.zeros(500), torch.zeros(500)
    ref, m_ref, v_ref = p0.copy(), np.zeros(500), np.zeros(500)
    for t, grad in enumerate(grads, 1):
        adam_step_torch(ours, torch.tensor(grad, dtype=torch.float32), m, v, t, 0.01, 0.9, 0.999, 1e-30)
        m_ref = 0.9 * m_ref + 0.1 * grad
        v_ref = 0.999 * v_ref + 0.001 * grad**2
        ref -= 0.01 * (m_ref / (1 - 0.9**t)) / np.sqrt(v_ref / (1 - 0.999**t))
    assert np.allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours.numpy(), p0, atol=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_cuda_eval_matches_cpu():
    params, x = car_net(), points(100_000)
    f, g = decode.eval_sdf(torch.from_numpy(params).cuda(), torch.from_numpy(x).cuda(), with_grad=True)
    f_cpu, g_cpu = decode.eval_sdf(params, x, with_grad=True)
    np.testing.assert_allclose(f.cpu().numpy(), f_cpu, atol=1e-5)
    np.testing.assert_allclose(g.cpu().numpy(), g_cpu, atol=1e-4)
