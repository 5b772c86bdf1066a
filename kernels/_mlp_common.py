"""Building blocks shared by the fused MLP kernels, and the host-side checks.

The network (nis_fast.core.layout): h1 = relu(x @ W0 + b0), h(l+1) = relu(h(l) @ Wl + bl) for
l = 1..7, y = tanh(h8 @ W8 + b8). Every Dense layer is one `tl.dot` on a [BLOCK, K] x [K, M]
tile, K and M the layer's fan-in / fan-out rounded up to 16 (tl.dot's smallest tile): the input
3 -> 16 and the output 1 -> 16 are padded with zeros when the weights are loaded, so the padded
columns carry exact zeros through every layer and never change a result.

Layer offsets come from nis_fast.core.layout.OFFSETS (the one definition of the flat layout) as
constexpr globals. The eight hidden activations are named tensors (h1..h8) rather than a loop, so
the backward pass can keep all of them on chip.
"""

import os

import torch
import triton
import triton.language as tl

from nis_fast.core.arrays import require_current_device
from nis_fast.core.layout import HIDDEN, INPUT_DIM, LAYER_SIZES, N_PARAMS, OFFSETS, OUTPUT_DIM
from nis_fast.core.precision import KERNEL_PRECISIONS
PAD = 16  # tl.dot needs every dimension >= 16
MAX_SHAPES = 65535  # networks per launch: the grid's second axis
IN_PAD = max(PAD, triton.next_power_of_2(INPUT_DIM))
OUT_PAD = max(PAD, triton.next_power_of_2(OUTPUT_DIM))
assert len(LAYER_SIZES) == 9, "the kernels unroll exactly this architecture"


# Compile-time constants read by the device helpers below (Triton allows only constexpr globals).
(W0, B0), (W1, B1), (W2, B2), (W3, B3), (W4, B4), (W5, B5), (W6, B6), (W7, B7), (W8, B8) = [
    (tl.constexpr(w), tl.constexpr(b)) for w, b in OFFSETS]
IN = tl.constexpr(INPUT_DIM)
IN_P = tl.constexpr(IN_PAD)
H = tl.constexpr(HIDDEN)
OUT = tl.constexpr(OUTPUT_DIM)
OUT_P = tl.constexpr(OUT_PAD)
NP = tl.constexpr(N_PARAMS)


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------
@triton.jit
def matmul(a, b, PRECISION: tl.constexpr):
    """a @ b with fp32 accumulation; operands kept fp32 ("fp32": IEEE FMA, "tf32x3": three tf32 tensor-core
    products, about fp32 accuracy; "tf32": one) or rounded to fp16/bf16.
    "bf16_emulated" rounds the operands to bf16 and multiplies them in fp32 (exact products, the same
    maths as "bf16"): the Triton interpreter multiplies bf16 tiles as raw uint16 bit patterns."""
    if PRECISION == "fp16":
        return tl.dot(a.to(tl.float16), b.to(tl.float16), out_dtype=tl.float32)
    elif PRECISION == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
    elif PRECISION == "bf16_emulated":
        a16 = a.to(tl.bfloat16).to(tl.float32)
        b16 = b.to(tl.bfloat16).to(tl.float32)
        return tl.dot(a16, b16, input_precision="ieee", out_dtype=tl.float32)
    elif PRECISION == "tf32x3":
        return tl.dot(a, b, input_precision="tf32x3", out_dtype=tl.float32)
    elif PRECISION == "tf32":
        return tl.dot(a, b, input_precision="tf32", out_dtype=tl.float32)
    else:
        return tl.dot(a, b, input_precision="ieee", out_dtype=tl.float32)


@triton.jit
def load_weight(p, W_OFF: tl.constexpr, FAN_IN: tl.constexpr, FAN_OUT: tl.constexpr,
                K: tl.constexpr, M: tl.constexpr):
    """W [FAN_IN, FAN_OUT] (row-major at p + W_OFF) as a zero-padded [K, M] fp32 tile."""
    i = tl.arange(0, K)[:, None]
    j = tl.arange(0, M)[None, :]
    return tl.load(p + W_OFF + i * FAN_OUT + j, mask=(i < FAN_IN) & (j < FAN_OUT), other=0.0)


@triton.jit
def dense(h, p, W_OFF: tl.constexpr, B_OFF: tl.constexpr, FAN_IN: tl.constexpr, FAN_OUT: tl.constexpr,
          K: tl.constexpr, M: tl.constexpr, PRECISION: tl.constexpr):
    """h [BLOCK, K] -> h @ W + b as [BLOCK, M] (pre-activation, fp32)."""
    w = load_weight(p, W_OFF, FAN_IN, FAN_OUT, K, M)
    j = tl.arange(0, M)
    b = tl.load(p + B_OFF + j, mask=j < FAN_OUT, other=0.0)
    return matmul(h, w, PRECISION) + b[None, :]


@triton.jit
def tanh(z):
    """tanh in fp32 without overflow: sign(z)(1 - e^-2|z|)/(1 + e^-2|z|), and its Taylor series
    z - z^3/3 + 2z^5/15 for |z| < 0.1 where that quotient loses relative precision."""
    a = tl.abs(z)
    e = tl.exp(-2.0 * tl.minimum(a, 20.0))  # tanh(20) rounds to 1 in fp32
    big = (1.0 - e) / (1.0 + e)
    zs = tl.where(a < 0.1, z, 0.0)  # the series only where it is used (no overflow in z^2 elsewhere)
    z2 = zs * zs
    small = zs * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0)))
    return tl.where(a < 0.1, small, tl.where(z < 0.0, -big, big))


@triton.jit
def load_points(x_ptr, rows, mask):
    """Rows of a [N, 3] point array as a zero-padded [BLOCK, IN_P] tile."""
    c = tl.arange(0, IN_P)[None, :]
    return tl.load(x_ptr + rows[:, None] * IN + c, mask=mask[:, None] & (c < IN), other=0.0)


@triton.jit
def program_points(params_ptr, x_ptr, N, BLOCK: tl.constexpr):
    """This program's tile: (its network's index in the stack, that network's parameters, its rows, their
    mask, the padded points)."""
    net = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = rows < N
    return net, params_ptr + net * NP, rows, mask, load_points(x_ptr + net * N * 3, rows, mask)


@triton.jit
def forward_hidden(x, p, PRECISION: tl.constexpr):
    """The eight ReLU layers: x [BLOCK, IN_P] -> (h1, ..., h8), each [BLOCK, H], all kept for backward."""
    h1 = tl.maximum(dense(x, p, W0, B0, IN, H, IN_P, H, PRECISION), 0.0)
    h2 = tl.maximum(dense(h1, p, W1, B1, H, H, H, H, PRECISION), 0.0)
    h3 = tl.maximum(dense(h2, p, W2, B2, H, H, H, H, PRECISION), 0.0)
    h4 = tl.maximum(dense(h3, p, W3, B3, H, H, H, H, PRECISION), 0.0)
    h5 = tl.maximum(dense(h4, p, W4, B4, H, H, H, H, PRECISION), 0.0)
    h6 = tl.maximum(dense(h5, p, W5, B5, H, H, H, H, PRECISION), 0.0)
    h7 = tl.maximum(dense(h6, p, W6, B6, H, H, H, H, PRECISION), 0.0)
    h8 = tl.maximum(dense(h7, p, W7, B7, H, H, H, H, PRECISION), 0.0)
    return h1, h2, h3, h4, h5, h6, h7, h8


@triton.jit
def forward_output(h8, p, PRECISION: tl.constexpr):
    """y = tanh(h8 @ W8 + b8) as a [BLOCK] vector (column 0 of the padded [BLOCK, OUT_P] tile)."""
    z = dense(h8, p, W8, B8, H, OUT, H, OUT_P, PRECISION)
    col = tl.arange(0, OUT_P)[None, :]
    return tanh(tl.sum(tl.where(col == 0, z, 0.0), axis=1))


@triton.jit
def backward_input(dz, p, W_OFF: tl.constexpr, FAN_IN: tl.constexpr, FAN_OUT: tl.constexpr,
                   K: tl.constexpr, M: tl.constexpr, PRECISION: tl.constexpr):
    """One Dense layer backwards: dz = dL/d(pre-activation) [BLOCK, M] -> dL/d(input) = dz @ W^T [BLOCK, K]."""
    w = load_weight(p, W_OFF, FAN_IN, FAN_OUT, K, M)
    return matmul(dz, tl.trans(w), PRECISION)


@triton.jit
def relu_backward(dh, h):
    """dL/d(pre-activation) of h = relu(z): the gradient passes where h > 0 (as torch's relu)."""
    return tl.where(h > 0, dh, 0.0)


# --------------------------------------------------------------------------------------------
# Host-side checks, shared by every launcher
# --------------------------------------------------------------------------------------------
def check_runnable(*tensors: torch.Tensor) -> None:
    """Triton runs on a CUDA device, or on CPU tensors in the interpreter (TRITON_INTERPRET=1)."""
    for t in tensors:
        if t.device.type == "cuda":
            require_current_device(t)
            continue
        if t.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
            continue
        raise RuntimeError(f"Triton kernels need a CUDA device or TRITON_INTERPRET=1 (got a tensor on {t.device}, "
                           f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r})")


def check_tensor(name: str, t, ndims: tuple, last: int | None = None) -> None:
    """float32, contiguous torch tensor with one of the allowed ranks (and last dim `last`)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise TypeError(f"{name}: expected float32, got {t.dtype}")
    if t.dim() not in ndims:
        raise ValueError(f"{name}: expected {' or '.join(f'{d}-D' for d in ndims)} tensor, got shape {tuple(t.shape)}")
    if last is not None and t.shape[-1] != last:
        raise ValueError(f"{name}: last dimension must be {last}, got shape {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: tensor must be contiguous (call .contiguous())")


def precision_constexpr(precision: str, device: torch.device) -> str:
    """The PRECISION constexpr for one of KERNEL_PRECISIONS (bf16 is emulated exactly in the interpreter)."""
    if precision not in KERNEL_PRECISIONS:
        raise ValueError(f"precision must be one of {KERNEL_PRECISIONS}, got {precision!r}")
    return "bf16_emulated" if precision == "bf16" and device.type != "cuda" else precision


def stacked(params: torch.Tensor, x: torch.Tensor):
    """Validate params [7553] with x [N, 3], or params [S, 7553] with x [S, N, 3]; returns
    (params [S, 7553], x [S, N, 3], single) where single says the inputs had no stack axis."""
    check_tensor("params", params, (1, 2), N_PARAMS)
    check_tensor("x", x, (2, 3), INPUT_DIM)
    if params.dim() + 1 != x.dim():
        raise ValueError(f"params {tuple(params.shape)} and x {tuple(x.shape)}: use params [7553] with x [N, 3], "
                         f"or params [S, 7553] with x [S, N, 3]")
    if params.dim() == 2 and params.shape[0] != x.shape[0]:
        raise ValueError(f"params has {params.shape[0]} shapes but x has {x.shape[0]}")
    if params.dim() == 2 and params.shape[0] > MAX_SHAPES:
        raise ValueError(f"at most {MAX_SHAPES} networks per launch (a CUDA grid axis), got {params.shape[0]}")
    if params.device != x.device:
        raise ValueError(f"params on {params.device} but x on {x.device}")
    check_runnable(params, x)
    single = params.dim() == 1
    return (params[None], x[None], True) if single else (params, x, False)


def launch_config(x: torch.Tensor, precision: str, gpu_configs: dict, block: int | None) -> tuple[int, int]:
    """(rows per block, warps): the kernel's per-precision GPU table, or 256-row blocks in the
    interpreter (fewer, larger programs run faster there); an explicit block wins."""
    if block is not None and (block < PAD or block & (block - 1)):
        raise ValueError(f"block must be a power of two >= {PAD} (rows per tl.dot tile), got {block}")
    if x.device.type != "cuda":
        return block or 256, 4
    gpu_block, warps = gpu_configs[precision]
    return block or gpu_block, warps
