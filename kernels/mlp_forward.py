"""Fused MLP forward: points [S, N, 3] -> sdf [S, N], the whole network in one kernel.

    h1 = relu(x @ W0 + b0),  h(l+1) = relu(h(l) @ Wl + bl)  (l = 1..7),  sdf = tanh(h8 @ W8 + b8)

Grid (cdiv(N, BLOCK), S): a program owns BLOCK rows of one network, loads that network's weights
once per layer and keeps the activations in registers; only the points come in and one float per
row goes out (12 + 4 bytes per sample). S = 1 is the single-network case.
"""
import torch
import triton
import triton.language as tl

from ._mlp_common import forward_hidden, forward_output, launch_config, precision_constexpr, program_points, stacked

# (rows per block, warps) per precision: picked by compiling for sm_90 (Triton 3.9) and keeping
# registers under 255 without spills where possible (ptxas statistics); their GPU timings are in
# benchmarks/RESULTS.md, other configurations are not timed yet.
GPU_CONFIGS = {"fp32": (128, 8), "tf32x3": (256, 8), "tf32": (256, 8), "fp16": (256, 8), "bf16": (256, 8)}


@triton.jit
def mlp_forward_kernel(params_ptr, x_ptr, out_ptr, N, BLOCK: tl.constexpr, PRECISION: tl.constexpr):
    net, p, rows, mask, x = program_points(params_ptr, x_ptr, N, BLOCK)
    h1, h2, h3, h4, h5, h6, h7, h8 = forward_hidden(x, p, PRECISION)
    tl.store(out_ptr + net * N + rows, forward_output(h8, p, PRECISION), mask=mask)


def mlp_forward(params: torch.Tensor, x: torch.Tensor, precision: str = "fp32",
                block: int | None = None) -> torch.Tensor:
    """sdf of the network(s) at x: params [7553] with x [N, 3] -> [N], or params [S, 7553] with
    x [S, N, 3] -> [S, N]. precision: "fp32" (IEEE), "tf32x3", "tf32", "fp16" or "bf16" matmul
    operands, always accumulated in fp32. Autograd-free."""
    p, xs, single = stacked(params, x)
    kprec = precision_constexpr(precision, x.device)
    S, N = xs.shape[0], xs.shape[1]
    out = torch.empty((S, N), dtype=torch.float32, device=x.device)
    if N > 0:
        block, warps = launch_config(x, precision, GPU_CONFIGS, block)
        mlp_forward_kernel[(triton.cdiv(N, block), S)](p, xs, out, N, BLOCK=block, PRECISION=kprec, num_warps=warps)
    return out[0] if single else out
