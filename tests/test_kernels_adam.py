"""Fused Adam kernel against Keras' formula written out in torch, against torch.optim.Adam, and a
few fused training steps against the same steps done with autograd."""
import os

import pytest
import torch

import reference as ref
from nis_fast.kernels import adam_step_, adam_update_, mlp_loss_and_grad
from nis_fast.core.layout import N_PARAMS, glorot_uniform

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@pytest.mark.parametrize("shape", [(N_PARAMS,), (3, N_PARAMS)])
def test_adam_matches_keras_formula(shape):
    params = randn(*shape, seed=1)
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    p_ref, m_ref, v_ref = params.double().clone(), m.double().clone(), v.double().clone()
    for step in range(1, 6):
        grad = randn(*shape, seed=10 + step) * 10.0 ** (-step)  # shrinking grads: m, v and the bias terms all matter
        adam_step_(params, grad, m, v, step, lr=1e-2)
        ref._adam_step_(p_ref, grad.double(), m_ref, v_ref, step, lr=1e-2)
    for got, want in ((params, p_ref), (m, m_ref), (v, v_ref)):  # fp32 rounding only
        assert (got.double() - want).abs().max() < 1e-6 * want.abs().max()


def test_adam_matches_torch_optim():
    """torch adds eps after the bias correction of v; with |grad| well above eps the two agree."""
    params = randn(N_PARAMS, seed=2)
    p_torch = params.clone().requires_grad_(True)
    opt = torch.optim.Adam([p_torch], lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    for step in range(1, 8):
        grad = randn(N_PARAMS, seed=20 + step)
        grad = grad.sign() * (0.5 + grad.abs())
        adam_step_(params, grad, m, v, step, lr=1e-3)
        p_torch.grad = grad.clone()
        opt.step()
    assert (params - p_torch.detach()).abs().max() < 1e-6
    assert (params - randn(N_PARAMS, seed=2)).abs().max() > 5e-3  # it did move


def test_adam_update_reads_each_networks_step_size_from_a_tensor():
    """adam_update_ on a stack with one alpha per network equals adam_step_ network by network (and a
    single network takes a one-value alpha)."""
    lrs = [1e-2, 3e-3, 1e-3]
    stack = randn(3, N_PARAMS, seed=5)
    m, v = torch.zeros_like(stack), torch.zeros_like(stack)
    alone = [(stack[s].clone(), torch.zeros(N_PARAMS, device=DEVICE), torch.zeros(N_PARAMS, device=DEVICE))
             for s in range(3)]
    for step in range(1, 5):
        grad = randn(3, N_PARAMS, seed=50 + step) * 10.0 ** (-step)
        alpha = torch.tensor([lr * (1 - 0.999 ** step) ** 0.5 / (1 - 0.9 ** step) for lr in lrs], device=DEVICE)
        adam_update_(stack, grad, m, v, alpha)
        for s, (p, ms, vs) in enumerate(alone):
            adam_step_(p, grad[s].contiguous(), ms, vs, step, lr=lrs[s])
    for s, (p, ms, vs) in enumerate(alone):
        assert torch.equal(stack[s], p) and torch.equal(m[s], ms) and torch.equal(v[s], vs)
    one, m1, v1 = randn(N_PARAMS, seed=6), torch.zeros(N_PARAMS, device=DEVICE), torch.zeros(N_PARAMS, device=DEVICE)
    two = one.clone()
    adam_update_(one, randn(N_PARAMS, seed=7), m1, v1, torch.tensor([1e-3 * (0.001 ** 0.5) / 0.1], device=DEVICE))
    adam_step_(two, randn(N_PARAMS, seed=7), torch.zeros_like(two), torch.zeros_like(two), 1, lr=1e-3)
    assert torch.equal(one, two)
    with pytest.raises(ValueError, match="alpha must be"):
        adam_update_(stack, grad, m, v, torch.ones(2, device=DEVICE))


def test_adam_rejects_bad_input():
    p = torch.zeros(10, device=DEVICE)
    with pytest.raises(ValueError, match="step counts updates from 1"):
        adam_step_(p, p.clone(), p.clone(), p.clone(), 0, lr=1e-3)
    with pytest.raises(ValueError, match="has shape"):
        adam_step_(p, torch.zeros(11, device=DEVICE), p.clone(), p.clone(), 1, lr=1e-3)
    with pytest.raises(TypeError, match="float32"):
        adam_step_(p, p.double(), p.clone(), p.clone(), 1, lr=1e-3)


def test_fused_training_steps_follow_autograd():
    """Five steps of (fused loss gradient + fused Adam) track the same steps done with autograd and
    Keras' Adam in float64, and the loss goes down."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(512, 3, generator=g) * 2 - 1).to(DEVICE)
    target = x.norm(dim=1) - 0.5  # a sphere
    params = torch.from_numpy(glorot_uniform(4)).to(DEVICE)
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    p_ref, m_ref, v_ref = params.double().cpu(), m.double().cpu(), v.double().cpu()
    losses = []
    for step in range(1, 6):
        loss, grad = mlp_loss_and_grad(params, x, target, block=128)
        adam_step_(params, grad, m, v, step, lr=1e-3)
        loss_ref, grad_ref = ref._mlp_loss_and_grad(p_ref, x.double().cpu(), target.double().cpu())
        ref._adam_step_(p_ref, grad_ref, m_ref, v_ref, step, lr=1e-3)
        losses.append(loss.item())
        assert abs(loss.item() - loss_ref.item()) < 1e-5
    assert (params.double().cpu() - p_ref).abs().max() < 1e-5
    assert losses[-1] < losses[0]
