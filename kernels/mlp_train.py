"""Fused MLP forward + backward of the mean L1 loss: the gradient of a training step in one kernel.

    y = f(x; params),  loss = mean_i |y_i - t_i|
    dz9 = sign(y - t) (1 - y^2) / N,  dz(l) = (dz(l+1) @ Wl^T) * [h(l) > 0]
    dL/dWl = h(l)^T @ dz(l+1),  dL/dbl = sum_rows dz(l+1)     (h(0) = x)

Grid (cdiv(N, BLOCK), S): a program runs its BLOCK rows forwards keeping h1..h8 in registers,
then backwards, and reduces every weight gradient over its rows on chip before one write. The
backward pass carries sign(y - t) unscaled and applies 1/N only to the fp32 weight gradients, so
fp16 operands do not underflow at large N. sign(0) = 0, as torch's |.| gradient.

Cross-program reduction (REDUCE):
  "partials" (default): program k of shape s stores its gradient and loss share to row
      partial[s, k, :] ([S, P, 7553 + 1], last column the loss), then one torch sum over k:
      deterministic, P * 30 KB of traffic.
  "atomic": every program atomically adds into out[s, :] ([S, 7553 + 1], zeroed):
      no second pass, but the float sum order varies from run to run.
"""
import torch
import triton
import triton.language as tl

from nis_fast.network import N_PARAMS

from ._mlp_common import NP, backward_all, check_tensor, default_block, forward_hidden, forward_output, \
    kernel_precision, load_points, stacked

GPU_BLOCK = 64
REDUCTIONS = ("partials", "atomic")


@triton.jit
def mlp_train_kernel(params_ptr, x_ptr, target_ptr, grad_ptr, N, inv_n, BLOCK: tl.constexpr,
                     PRECISION: tl.constexpr, ATOMIC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    shape = tl.program_id(1).to(tl.int64)
    p = params_ptr + shape * NP
    if ATOMIC:
        g = grad_ptr + shape * (NP + 1)
    else:
        g = grad_ptr + (shape * tl.num_programs(0) + pid) * (NP + 1)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    mask = rows < N
    x = load_points(x_ptr + shape * N * 3, rows, mask)
    t = tl.load(target_ptr + shape * N + rows, mask=mask, other=0.0)
    h1, h2, h3, h4, h5, h6, h7, h8 = forward_hidden(x, p, PRECISION)
    y = forward_output(h8, p, PRECISION)
    r = y - t
    sign = tl.where(mask & (r > 0), 1.0, tl.where(mask & (r < 0), -1.0, 0.0))
    loss = tl.sum(tl.where(mask, tl.abs(r), 0.0), axis=0) * inv_n
    if ATOMIC:
        tl.atomic_add(g + NP, loss)
    else:
        tl.store(g + NP, loss)
    backward_all(sign * (1.0 - y * y), x, h1, h2, h3, h4, h5, h6, h7, h8, p, g, inv_n, PRECISION, True, ATOMIC)


def mlp_loss_and_grad(params: torch.Tensor, x: torch.Tensor, target: torch.Tensor, precision: str = "fp32",
                      reduce: str = "partials", block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean L1 loss and its gradient w.r.t. the flat parameters. params [7553], x [N, 3], target [N]
    -> (loss [], grad [7553]); params [S, 7553], x [S, N, 3], target [S, N] -> (loss [S], grad
    [S, 7553]), each shape's own mean loss and gradient. Autograd-free."""
    p, xs, single = stacked(params, x)
    check_tensor("target", target, (x.dim() - 1,))
    if tuple(target.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"target shape {tuple(target.shape)} does not match x {tuple(x.shape)}")
    if target.device != x.device:
        raise ValueError(f"target on {target.device} but x on {x.device}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    kprec = kernel_precision(precision, x.device)
    S, N = xs.shape[0], xs.shape[1]
    if N == 0:
        raise ValueError("x has no points: the mean loss of an empty batch is undefined")
    block = block or default_block(x, GPU_BLOCK)
    programs = triton.cdiv(N, block)
    atomic = reduce == "atomic"
    shape = (S, N_PARAMS + 1) if atomic else (S, programs, N_PARAMS + 1)
    buf = (torch.zeros if atomic else torch.empty)(shape, dtype=torch.float32, device=x.device)
    mlp_train_kernel[(programs, S)](p, xs, target.reshape(S, N), buf, N, 1.0 / N, BLOCK=block, PRECISION=kprec,
                                    ATOMIC=atomic)
    total = buf if atomic else buf.sum(dim=1)
    loss, grad = total[:, N_PARAMS], total[:, :N_PARAMS].contiguous()
    return (loss[0], grad[0]) if single else (loss, grad)
