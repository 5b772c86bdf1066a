"""Fused Adam step on flat parameters, in place (Keras' formula, Keras' default eps = 1e-7).

    t = step (1 for the first update)
    alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    p <- p - alpha * m / (sqrt(v) + eps)

This is Keras' Adam (eps added to sqrt(v) before the bias correction of v);
torch.optim.Adam adds eps to sqrt(v / (1 - beta2^t)) instead, which differs only when sqrt(v) is
near eps. One program updates BLOCK consecutive values of params, m and v (any shape, contiguous,
so [S, 7553] stacks of networks take one launch).
"""
import math

import torch
import triton
import triton.language as tl

from ._mlp_common import check_runnable

BLOCK = 1024


@triton.jit
def adam_kernel(p_ptr, g_ptr, m_ptr, v_ptr, n, alpha, beta1, beta2, eps, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask)
    m = beta1 * tl.load(m_ptr + offs, mask=mask) + (1.0 - beta1) * g
    v = beta2 * tl.load(v_ptr + offs, mask=mask) + (1.0 - beta2) * g * g
    p = tl.load(p_ptr + offs, mask=mask) - alpha * m / (tl.sqrt(v) + eps)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(p_ptr + offs, p, mask=mask)


def adam_step_(params: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float,
               beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7) -> None:
    """One Adam update of params, m, v in place (see the module docstring); step counts from 1."""
    for name, t in (("params", params), ("grad", grad), ("m", m), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
            raise TypeError(f"adam_step_: {name} must be a float32 torch.Tensor")
        if t.shape != params.shape:
            raise ValueError(f"adam_step_: {name} has shape {tuple(t.shape)}, params {tuple(params.shape)}")
        if t.device != params.device:
            raise ValueError(f"adam_step_: {name} on {t.device}, params on {params.device}")
        if not t.is_contiguous():
            raise ValueError(f"adam_step_: {name} must be contiguous")
    if int(step) != step or step < 1:
        raise ValueError(f"adam_step_: step counts updates from 1, got {step}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and eps > 0.0 and lr >= 0.0):
        raise ValueError(f"adam_step_: need 0 <= beta1, beta2 < 1, eps > 0, lr >= 0 (got {beta1}, {beta2}, {eps}, {lr})")
    check_runnable(params)
    n = params.numel()
    if n == 0:
        return
    alpha = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    adam_kernel[(triton.cdiv(n, BLOCK),)](params, grad, m, v, n, alpha, beta1, beta2, eps, BLOCK=BLOCK)
