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

adam_step_ takes the step count and lr; adam_update_ takes alpha itself, one value per network, from a
device tensor: a training loop whose steps read their alphas from a table is the same sequence of
launches every epoch, which a CUDA graph can capture once and replay (nis_fast.fit).
"""
import torch
import triton
import triton.language as tl

from nis_fast.core.adam import adam_step_size

from ._mlp_common import check_runnable

BLOCK = 1024


@triton.jit
def adam_kernel(p_ptr, g_ptr, m_ptr, v_ptr, n, alpha, alpha_ptr, row, beta1, beta2, one_minus_beta1, one_minus_beta2,
                eps, BLOCK: tl.constexpr, ALPHA_PER_ROW: tl.constexpr):
    """ALPHA_PER_ROW: alpha of value i is alpha_ptr[i // row] (one per network of a stack), else `alpha`.
    1 - beta comes from the host: in float32 on the GPU, 1 - 0.999 rounds beta2 first and keeps only
    four significant digits of the difference."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if ALPHA_PER_ROW:
        alpha = tl.load(alpha_ptr + offs // row, mask=mask, other=0.0)
    g = tl.load(g_ptr + offs, mask=mask)
    m = beta1 * tl.load(m_ptr + offs, mask=mask) + one_minus_beta1 * g
    v = beta2 * tl.load(v_ptr + offs, mask=mask) + one_minus_beta2 * g * g
    p = tl.load(p_ptr + offs, mask=mask) - alpha * m / (tl.sqrt(v) + eps)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(p_ptr + offs, p, mask=mask)


def _check(caller: str, params, grad, m, v, beta1: float, beta2: float, eps: float) -> None:
    for name, t in (("params", params), ("grad", grad), ("m", m), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
            raise TypeError(f"{caller}: {name} must be a float32 torch.Tensor")
        if t.shape != params.shape:
            raise ValueError(f"{caller}: {name} has shape {tuple(t.shape)}, params {tuple(params.shape)}")
        if t.device != params.device:
            raise ValueError(f"{caller}: {name} on {t.device}, params on {params.device}")
        if not t.is_contiguous():
            raise ValueError(f"{caller}: {name} must be contiguous")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and eps > 0.0):
        raise ValueError(f"{caller}: need 0 <= beta1, beta2 < 1 and eps > 0 (got {beta1}, {beta2}, {eps})")
    check_runnable(params)


def adam_step_(params: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float,
               beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7) -> None:
    """One Adam update of params, m, v in place (see the module docstring); step counts from 1."""
    _check("adam_step_", params, grad, m, v, beta1, beta2, eps)
    if int(step) != step or step < 1:
        raise ValueError(f"adam_step_: step counts updates from 1, got {step}")
    if not lr >= 0.0:
        raise ValueError(f"adam_step_: need lr >= 0, got {lr}")
    n = params.numel()
    if n == 0:
        return
    alpha = adam_step_size(lr, step, beta1, beta2)
    adam_kernel[(triton.cdiv(n, BLOCK),)](params, grad, m, v, n, alpha, params, 1, beta1, beta2, 1.0 - beta1,
                                          1.0 - beta2, eps, BLOCK=BLOCK, ALPHA_PER_ROW=False)


def adam_update_(params: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7) -> None:
    """The same update with the step size alpha (lr and bias correction) read from a float32 tensor on
    params' device: one value per network of params [S, 7553] (alpha [S]), or one for params [7553]."""
    _check("adam_update_", params, grad, m, v, beta1, beta2, eps)
    networks = params.shape[0] if params.dim() == 2 else 1
    if not (isinstance(alpha, torch.Tensor) and alpha.dtype == torch.float32 and alpha.numel() == networks
            and alpha.device == params.device and alpha.is_contiguous()):
        raise ValueError(f"adam_update_: alpha must be a contiguous float32 tensor of {networks} value(s) on "
                         f"{params.device}, got {alpha!r:.80}")
    n = params.numel()
    if n == 0:
        return
    adam_kernel[(triton.cdiv(n, BLOCK),)](params, grad, m, v, n, 0.0, alpha, n // networks, beta1, beta2,
                                          1.0 - beta1, 1.0 - beta2, eps, BLOCK=BLOCK, ALPHA_PER_ROW=True)
