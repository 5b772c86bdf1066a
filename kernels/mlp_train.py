"""Fused MLP forward + backward of the mean L1 loss: the gradient of a training step in one kernel.

    y = f(x; params),  loss = mean_i |y_i - t_i|
    dz9 = sign(y - t) (1 - y^2) / N,  dz(l) = (dz(l+1) @ Wl^T) * [h(l) > 0]
    dL/dWl = h(l)^T @ dz(l+1),  dL/dbl = sum_rows dz(l+1)     (h(0) = x)

Grid (P, S): program k of network s walks the row blocks k, k + P, k + 2P, ... of that network; for
each block it runs the forward keeping h1..h8 in registers, then the backward, and adds the
block's weight gradients to accumulators held in registers. Only at the end does it write them,
once: per-program writes cost P * 30 KB in all, however large N is (one block per program would
write 30 KB per BLOCK rows, far more than the 16 bytes each row reads).

The backward pass carries sign(y - t) unscaled and applies 1/N to the fp32 accumulators when
writing, so fp16 operands do not underflow at large N. sign(0) = 0, as torch's |.| gradient.

Cross-program reduction (reduce=):
  "partials" (default): program k stores its gradient and loss share to its own row of
      partial [S, P, 7553 + 1] (last column: the loss), then one torch sum over k;
      deterministic for a fixed P.
  "atomic": every program adds into out [S, 7553 + 1] (zeroed) with atomics: no second pass,
      the float summation order varies from run to run.
"""
import torch
import triton
import triton.language as tl

from nis_fast.core.layout import N_PARAMS

from ._mlp_common import B0, B1, B2, B3, B4, B5, B6, B7, B8, H, IN, IN_P, NP, OUT, OUT_P, W0, W1, W2, W3, W4, W5, \
    W6, W7, W8, backward_input, check_tensor, forward_hidden, forward_output, launch_config, precision_constexpr, \
    load_points, matmul, relu_backward, stacked

# (rows per block, warps) per precision: picked by compiling for sm_90 (Triton 3.9) and keeping
# registers under 255 without spills where possible (ptxas statistics); tf32x3's by timing on an H200,
# where 32 x 4 beat 32 x 8 at every batch above the latency-bound range (benchmarks/tune_mlp_train.py,
# benchmarks/RESULTS.md session 9). The others are not timed yet.
GPU_CONFIGS = {"fp32": (32, 8), "tf32x3": (32, 4), "tf32": (32, 8), "fp16": (32, 8), "bf16": (32, 8)}
GPU_PROGRAMS_PER_SM = 1  # a 255-register 8-warp program fills an SM's register file; P = min(blocks, SMs / S)
# Small batches are latency-bound: a program's time is the chain of 26 dependent products of a
# forward and backward pass per block, which smaller tiles on fewer warps finish sooner (16 rows x 4
# warps was the fastest tf32x3 launch at 2048 rows on an H200, and still at 16384 rows, eight blocks a
# program: benchmarks/RESULTS.md). Used while a program gets at most LATENCY_BOUND_BLOCKS blocks of 16
# rows (one network at up to ~16k rows, fit_many's stacks of 8 at the paper's batch); the time grows with
# the blocks a program walks. The other precisions keep GPU_CONFIGS until they are measured.
LATENCY_BOUND_CONFIGS = {"tf32x3": (16, 4)}
LATENCY_BOUND_BLOCKS = 8
REDUCTIONS = ("partials", "atomic")


@triton.jit
def accumulate(dz, h_in, acc_w, acc_b, PRECISION: tl.constexpr):
    """acc_w += h_in^T @ dz, acc_b += sum_rows dz: one layer's gradient over one block of rows."""
    return acc_w + matmul(tl.trans(h_in), dz, PRECISION), acc_b + tl.sum(dz, axis=0)


@triton.jit
def write_grad(acc_w, acc_b, g, scale, W_OFF: tl.constexpr, B_OFF: tl.constexpr, FAN_IN: tl.constexpr,
               FAN_OUT: tl.constexpr, K: tl.constexpr, M: tl.constexpr, ATOMIC: tl.constexpr):
    """Write scale * (accumulated dW [K, M], db [M]) unpadded to g: atomically added, or stored."""
    i = tl.arange(0, K)[:, None]
    j = tl.arange(0, M)[None, :]
    jb = tl.arange(0, M)
    if ATOMIC:
        tl.atomic_add(g + W_OFF + i * FAN_OUT + j, acc_w * scale, mask=(i < FAN_IN) & (j < FAN_OUT))
        tl.atomic_add(g + B_OFF + jb, acc_b * scale, mask=jb < FAN_OUT)
    else:
        tl.store(g + W_OFF + i * FAN_OUT + j, acc_w * scale, mask=(i < FAN_IN) & (j < FAN_OUT))
        tl.store(g + B_OFF + jb, acc_b * scale, mask=jb < FAN_OUT)


@triton.jit
def mlp_train_kernel(params_ptr, x_ptr, target_ptr, grad_ptr, N, inv_n, BLOCK: tl.constexpr,
                     PRECISION: tl.constexpr, ATOMIC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # int64 row arithmetic: the loop below counts in its type
    programs = tl.num_programs(0)
    net = tl.program_id(1).to(tl.int64)
    p = params_ptr + net * NP
    x_ptr += net * N * 3
    target_ptr += net * N
    if ATOMIC:
        g = grad_ptr + net * (NP + 1)
    else:
        g = grad_ptr + (net * programs + pid) * (NP + 1)

    gw0 = tl.zeros((IN_P, H), tl.float32)
    gw1 = tl.zeros((H, H), tl.float32)
    gw2 = tl.zeros((H, H), tl.float32)
    gw3 = tl.zeros((H, H), tl.float32)
    gw4 = tl.zeros((H, H), tl.float32)
    gw5 = tl.zeros((H, H), tl.float32)
    gw6 = tl.zeros((H, H), tl.float32)
    gw7 = tl.zeros((H, H), tl.float32)
    gw8 = tl.zeros((H, OUT_P), tl.float32)
    gb0 = tl.zeros((H,), tl.float32)
    gb1 = tl.zeros((H,), tl.float32)
    gb2 = tl.zeros((H,), tl.float32)
    gb3 = tl.zeros((H,), tl.float32)
    gb4 = tl.zeros((H,), tl.float32)
    gb5 = tl.zeros((H,), tl.float32)
    gb6 = tl.zeros((H,), tl.float32)
    gb7 = tl.zeros((H,), tl.float32)
    gb8 = tl.zeros((OUT_P,), tl.float32)
    loss = tl.zeros((BLOCK,), tl.float32)

    for block in range(pid, tl.cdiv(N, BLOCK), programs):
        rows = block * BLOCK + tl.arange(0, BLOCK)
        mask = rows < N
        x = load_points(x_ptr, rows, mask)
        t = tl.load(target_ptr + rows, mask=mask, other=0.0)
        h1, h2, h3, h4, h5, h6, h7, h8 = forward_hidden(x, p, PRECISION)
        y = forward_output(h8, p, PRECISION)
        r = y - t
        loss += tl.where(mask, tl.abs(r), 0.0)
        sign = tl.where(mask & (r > 0), 1.0, tl.where(mask & (r < 0), -1.0, 0.0))
        col = tl.arange(0, OUT_P)[None, :]
        dz = tl.where(col == 0, (sign * (1.0 - y * y))[:, None], 0.0)  # [BLOCK, OUT_P], column 0 live
        gw8, gb8 = accumulate(dz, h8, gw8, gb8, PRECISION)
        dz = relu_backward(backward_input(dz, p, W8, H, OUT, H, OUT_P, PRECISION), h8)
        gw7, gb7 = accumulate(dz, h7, gw7, gb7, PRECISION)
        dz = relu_backward(backward_input(dz, p, W7, H, H, H, H, PRECISION), h7)
        gw6, gb6 = accumulate(dz, h6, gw6, gb6, PRECISION)
        dz = relu_backward(backward_input(dz, p, W6, H, H, H, H, PRECISION), h6)
        gw5, gb5 = accumulate(dz, h5, gw5, gb5, PRECISION)
        dz = relu_backward(backward_input(dz, p, W5, H, H, H, H, PRECISION), h5)
        gw4, gb4 = accumulate(dz, h4, gw4, gb4, PRECISION)
        dz = relu_backward(backward_input(dz, p, W4, H, H, H, H, PRECISION), h4)
        gw3, gb3 = accumulate(dz, h3, gw3, gb3, PRECISION)
        dz = relu_backward(backward_input(dz, p, W3, H, H, H, H, PRECISION), h3)
        gw2, gb2 = accumulate(dz, h2, gw2, gb2, PRECISION)
        dz = relu_backward(backward_input(dz, p, W2, H, H, H, H, PRECISION), h2)
        gw1, gb1 = accumulate(dz, h1, gw1, gb1, PRECISION)
        dz = relu_backward(backward_input(dz, p, W1, H, H, H, H, PRECISION), h1)
        gw0, gb0 = accumulate(dz, x, gw0, gb0, PRECISION)

    write_grad(gw0, gb0, g, inv_n, W0, B0, IN, H, IN_P, H, ATOMIC)
    write_grad(gw1, gb1, g, inv_n, W1, B1, H, H, H, H, ATOMIC)
    write_grad(gw2, gb2, g, inv_n, W2, B2, H, H, H, H, ATOMIC)
    write_grad(gw3, gb3, g, inv_n, W3, B3, H, H, H, H, ATOMIC)
    write_grad(gw4, gb4, g, inv_n, W4, B4, H, H, H, H, ATOMIC)
    write_grad(gw5, gb5, g, inv_n, W5, B5, H, H, H, H, ATOMIC)
    write_grad(gw6, gb6, g, inv_n, W6, B6, H, H, H, H, ATOMIC)
    write_grad(gw7, gb7, g, inv_n, W7, B7, H, H, H, H, ATOMIC)
    write_grad(gw8, gb8, g, inv_n, W8, B8, H, OUT, H, OUT_P, ATOMIC)
    if ATOMIC:
        tl.atomic_add(g + NP, tl.sum(loss, axis=0) * inv_n)
    else:
        tl.store(g + NP, tl.sum(loss, axis=0) * inv_n)


def latency_bound_configs(x: torch.Tensor, n: int, shapes: int) -> dict:
    """GPU_CONFIGS, with LATENCY_BOUND_CONFIGS in it where n rows of each of `shapes` networks give
    every program at most LATENCY_BOUND_BLOCKS blocks of that config's rows."""
    if x.device.type != "cuda":
        return GPU_CONFIGS
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    small = {prec: cfg for prec, cfg in LATENCY_BOUND_CONFIGS.items()
             if triton.cdiv(n, cfg[0]) * shapes <= LATENCY_BOUND_BLOCKS * sms * GPU_PROGRAMS_PER_SM}
    return {**GPU_CONFIGS, **small}


def default_programs(x: torch.Tensor, blocks: int, shapes: int) -> int:
    """Programs per network: enough to fill the GPU (SMs * GPU_PROGRAMS_PER_SM over all networks), never
    more than there are row blocks; a few in the interpreter (it runs them one after another)."""
    if x.device.type != "cuda":
        return min(blocks, 2)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    return max(1, min(blocks, triton.cdiv(sms * GPU_PROGRAMS_PER_SM, shapes)))


def mlp_loss_and_grad(params: torch.Tensor, x: torch.Tensor, target: torch.Tensor, precision: str = "fp32",
                      reduce: str = "partials", block: int | None = None, programs: int | None = None,
                      warps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean L1 loss and its gradient w.r.t. the flat parameters. params [7553], x [N, 3], target [N]
    -> (loss [], grad [7553]); params [S, 7553], x [S, N, 3], target [S, N] -> (loss [S], grad
    [S, 7553]), each network's own mean loss and gradient. Autograd-free. block (rows per step),
    programs (per network) and warps (per program) override the defaults."""
    p, xs, single = stacked(params, x)
    check_tensor("target", target, (x.dim() - 1,))
    if tuple(target.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"target shape {tuple(target.shape)} does not match x {tuple(x.shape)}")
    if target.device != x.device:
        raise ValueError(f"target on {target.device} but x on {x.device}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    kprec = precision_constexpr(precision, x.device)
    S, N = xs.shape[0], xs.shape[1]
    if N == 0:
        raise ValueError("x has no points: the mean loss of an empty batch is undefined")
    if warps is not None and warps not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"warps must be a power of two from 1 to 32, got {warps}")
    block, default_warps = launch_config(x, precision, latency_bound_configs(x, N, S), block)
    warps = warps or default_warps
    blocks = triton.cdiv(N, block)
    if programs is not None and programs < 1:
        raise ValueError(f"programs must be >= 1, got {programs}")
    programs = min(programs, blocks) if programs else default_programs(x, blocks, S)
    atomic = reduce == "atomic"
    size = (S, N_PARAMS + 1) if atomic else (S, programs, N_PARAMS + 1)
    buf = (torch.zeros if atomic else torch.empty)(size, dtype=torch.float32, device=x.device)
    mlp_train_kernel[(programs, S)](p, xs, target.reshape(S, N), buf, N, 1.0 / N, BLOCK=block, PRECISION=kprec,
                                    ATOMIC=atomic, num_warps=warps)
    total = buf if atomic else buf.sum(dim=1)
    loss, grad = total[:, N_PARAMS], total[:, :N_PARAMS].contiguous()
    return (loss[0], grad[0]) if single else (loss, grad)
