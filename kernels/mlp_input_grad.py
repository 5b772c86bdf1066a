"""Fused MLP forward + gradient with respect to the input points (unnormalised surface normals).

    sdf = tanh(z9),  dz9 = 1 - sdf^2,  dz(l) = (dz(l+1) @ Wl^T) * [h(l) > 0],  d sdf/dx = (dz1 @ W0^T)[:, :3]

A program runs the forward for its BLOCK rows keeping h1..h8 in registers, then backpropagates a
unit output gradient through the nine layers (no weight gradients). Grid (cdiv(N, BLOCK), S).
"""
import torch
import triton
import triton.language as tl

from nis_fast.core.layout import INPUT_DIM

from ._mlp_common import H, IN, IN_P, OUT, OUT_P, W0, W1, W2, W3, W4, W5, W6, W7, W8, backward_input, \
    forward_hidden, forward_output, launch_config, precision_constexpr, program_points, relu_backward, stacked

# (rows per block, warps) per precision: picked by compiling for sm_90 (Triton 3.9) and keeping
# registers under 255 without spills where possible (ptxas statistics); not yet timed on a GPU.
GPU_CONFIGS = {"fp32": (64, 8), "tf32x3": (128, 8), "tf32": (128, 8), "fp16": (128, 8), "bf16": (128, 8)}


@triton.jit
def mlp_input_grad_kernel(params_ptr, x_ptr, sdf_ptr, grad_ptr, N, BLOCK: tl.constexpr, PRECISION: tl.constexpr):
    net, p, rows, mask, x = program_points(params_ptr, x_ptr, N, BLOCK)
    h1, h2, h3, h4, h5, h6, h7, h8 = forward_hidden(x, p, PRECISION)
    y = forward_output(h8, p, PRECISION)
    tl.store(sdf_ptr + net * N + rows, y, mask=mask)

    col = tl.arange(0, OUT_P)[None, :]
    dz = tl.where(col == 0, (1.0 - y * y)[:, None], 0.0)  # [BLOCK, OUT_P], column 0 live
    dz = relu_backward(backward_input(dz, p, W8, H, OUT, H, OUT_P, PRECISION), h8)
    dz = relu_backward(backward_input(dz, p, W7, H, H, H, H, PRECISION), h7)
    dz = relu_backward(backward_input(dz, p, W6, H, H, H, H, PRECISION), h6)
    dz = relu_backward(backward_input(dz, p, W5, H, H, H, H, PRECISION), h5)
    dz = relu_backward(backward_input(dz, p, W4, H, H, H, H, PRECISION), h4)
    dz = relu_backward(backward_input(dz, p, W3, H, H, H, H, PRECISION), h3)
    dz = relu_backward(backward_input(dz, p, W2, H, H, H, H, PRECISION), h2)
    dz = relu_backward(backward_input(dz, p, W1, H, H, H, H, PRECISION), h1)
    dx = backward_input(dz, p, W0, IN, H, IN_P, H, PRECISION)
    c = tl.arange(0, IN_P)[None, :]
    tl.store(grad_ptr + net * N * 3 + rows[:, None] * IN + c, dx, mask=mask[:, None] & (c < IN))


def mlp_forward_and_input_grad(params: torch.Tensor, x: torch.Tensor, precision: str = "fp32",
                               block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sdf, d sdf / d x): params [7553] with x [N, 3] -> ([N], [N, 3]), or params [S, 7553] with
    x [S, N, 3] -> ([S, N], [S, N, 3]). Autograd-free."""
    p, xs, single = stacked(params, x)
    kprec = precision_constexpr(precision, x.device)
    S, N = xs.shape[0], xs.shape[1]
    sdf = torch.empty((S, N), dtype=torch.float32, device=x.device)
    grad = torch.empty((S, N, INPUT_DIM), dtype=torch.float32, device=x.device)
    if N > 0:
        block, warps = launch_config(x, precision, GPU_CONFIGS, block)
        mlp_input_grad_kernel[(triton.cdiv(N, block), S)](p, xs, sdf, grad, N, BLOCK=block, PRECISION=kprec,
                    num_warps=warps)
    return (sdf[0], grad[0]) if single else (sdf, grad)
