"""The network evaluated natively and in torch, and the torch training step.

- `eval_sdf(params, points, with_grad)`: the network (and d f / d x) at a batch of points. Kernel:
  csrc/include/nis/mlp.h (written once), run by csrc/cpu/decode.cpp (OpenMP) or csrc/cuda/decode.cu.
  Twins: tests/reference.py `_mlp_forward_numpy`, `_sdf_gradient`. Test: tests/test_mlp.py.
- `mlp_forward_torch(params, x)`: the network in torch, differentiable (gradients w.r.t. points or
  parameters); `forward_layers` is the same forward on unflattened layers that can write into buffers,
  which is what `TorchLossGrad` runs. Twin: `_mlp_forward`.
- `TorchLossGrad`: the mean L1 loss and its gradient w.r.t. the flat parameters, by a manual backward
  (the CPU training step). Twin: `_mlp_loss_and_grad`. Test: tests/test_mlp.py.
- `adam_step_torch`: Keras' Adam on flat tensors. Twin: `_adam_step_`.
- `loss_grad_cpu`, `train_step_cpu`: the CPU training step, forward, loss, backward and Adam in one
  native call (csrc/cpu/train.cpp). Twins: `_mlp_loss_and_grad` and `TorchLossGrad` + `adam_step_torch`.
  Test: tests/test_train_cpu.py.
The fused Triton versions of the training step live in nis_fast.kernels (one launch per step on a GPU).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.adam import adam_step_size
from ..core.arrays import data_ptr, device_of, stream_ptr
from ..core.layout import LAYER_SIZES, N_PARAMS, unflatten
from .native import native, require_cuda


def params_on(params, device: str):
    """The flat parameters as a contiguous float32 array (numpy on the CPU) or tensor (on CUDA), checked."""
    if isinstance(params, np.ndarray) or not hasattr(params, "detach"):
        p = np.asarray(params)
    else:
        p = params.detach()
    if p.ndim != 1 or p.shape[0] != N_PARAMS:
        raise ValueError(f"nis_fast: params must be a flat vector of {N_PARAMS} values, got shape {tuple(p.shape)}")
    if device == "cuda":
        require_cuda()
        p = torch.as_tensor(p).to(device="cuda", dtype=torch.float32).contiguous()
        finite = bool(torch.isfinite(p).all())
    else:
        p = np.ascontiguousarray(p if isinstance(p, np.ndarray) else p.cpu().numpy(), dtype=np.float32)
        finite = bool(np.all(np.isfinite(p)))
    if not finite:  # checked on both devices: a NaN weight must not decode silently on one of them
        raise ValueError("nis_fast: params contain NaN or inf")
    return p


def eval_sdf(params, points, *, with_grad: bool = False):
    """Network value at points [N, 3] (numpy or torch, any device): sdf [N], and df/dx [N, 3] if with_grad.

    Runs where the points are (CUDA tensor -> GPU). Output has the points' kind,
    device and floating dtype; the evaluation itself is float32.
    """
    device = device_of(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"nis_fast: eval_sdf: points must have shape [N, 3], got {tuple(points.shape)}")
    p = params_on(params, device)
    if isinstance(points, np.ndarray):
        if not np.issubdtype(points.dtype, np.floating):
            raise TypeError(f"nis_fast: eval_sdf: points must be floating point, got {points.dtype}")
        x = np.ascontiguousarray(points, dtype=np.float32)
        sdf = np.empty(len(x), dtype=np.float32)
        grad = np.empty((len(x), 3), dtype=np.float32) if with_grad else None
        cast = lambda a: a.astype(points.dtype, copy=False)  # noqa: E731
    else:
        if not points.is_floating_point():
            raise TypeError(f"nis_fast: eval_sdf: points must be floating point, got {points.dtype}")
        x = points.detach().to(torch.float32).contiguous()
        sdf = torch.empty(len(x), dtype=torch.float32, device=x.device)
        grad = torch.empty((len(x), 3), dtype=torch.float32, device=x.device) if with_grad else None
        cast = lambda a: a.to(points.dtype)  # noqa: E731
    native.sdf_points(device, data_ptr(p), data_ptr(x), len(x), data_ptr(sdf),
                      data_ptr(grad) if with_grad else 0, stream_ptr(device))
    return (cast(sdf), cast(grad)) if with_grad else cast(sdf)


def forward_layers(layers, x, activations=None):
    """The network on unflattened layers [(W, b)]: x [N, 3] -> [N, 1]; relu after every layer but the
    last, tanh after it. With `activations` (one [>= N, fan_out] buffer per layer) each layer's output is
    written into its buffer, which the training step's backward reads; without, autograd can follow."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = torch.addmm(b, h, w, out=None if activations is None else activations[i][:len(x)])
        h = h.relu_() if i + 1 < len(layers) else h.tanh_()
    return h


def mlp_forward_torch(params, x):
    """The network's values at x [N, 3] (float32 or float64 torch), [N]; differentiable."""
    return forward_layers(unflatten(params), x)[:, 0]


class TorchLossGrad:
    """L1 loss and its gradient w.r.t. the flat parameters, by a manual forward/backward.

    The forward is `forward_layers` writing into buffers allocated once for `max_batch`; the backward
    is written out (the test checks it against torch autograd) into one flat gradient vector.
    call(params, x [b, 3], target [b]) -> (mean |f(x) - target| as a 0-d tensor, grad [7553]).
    """

    def __init__(self, max_batch: int, device, dtype=torch.float32):
        self.activations = [torch.empty(max_batch, fan_out, device=device, dtype=dtype) for _, fan_out in LAYER_SIZES]
        self.grad = torch.zeros(N_PARAMS, device=device, dtype=dtype)
        self.grad_layers = unflatten(self.grad)
        self._layers_of = None  # (data_ptr, layer views) of the last params seen: views are not free at this size

    def __call__(self, params, x, target):
        b = len(x)
        if self._layers_of is None or self._layers_of[0] != params.data_ptr():
            self._layers_of = (params.data_ptr(), unflatten(params))
        layers = self._layers_of[1]
        y = forward_layers(layers, x, self.activations)
        acts = [x] + [h[:b] for h in self.activations[:-1]]
        err = y[:, 0] - target
        loss = err.abs().mean()
        # d loss / d z_out = sign(err) / b * (1 - y^2): the tanh derivative from its output.
        dz = (torch.sign(err) / b).unsqueeze(1).mul_(1 - y * y)
        for i in range(len(layers) - 1, -1, -1):
            w, _ = layers[i]
            gw, gb = self.grad_layers[i]
            torch.mm(acts[i].t(), dz, out=gw)
            torch.sum(dz, 0, out=gb)
            if i:
                # ReLU backward: keep the gradient where the layer's output was positive.
                dz = torch.ops.aten.threshold_backward(dz @ w.t(), acts[i], 0)
        return loss, self.grad


def adam_step_torch(params, grad, m, v, step: int, lr: float, beta1: float, beta2: float, eps: float):
    """Keras' Adam update, in place on flat tensors (step counts from 1)."""
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    params.addcdiv_(m, v.sqrt().add_(eps), value=-adam_step_size(lr, step, beta1, beta2))


def _cpu_float32(name: str, t, shape: tuple):
    """t itself when it is a contiguous float32 CPU tensor of `shape`; else a clear error."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.dtype != torch.float32:
        raise TypeError(f"nis_fast: the CPU training step needs {name} as a float32 CPU tensor, got "
                        f"{type(t).__name__}{'' if not isinstance(t, torch.Tensor) else f' {t.dtype} on {t.device}'}")
    if tuple(t.shape) != shape or not t.is_contiguous():
        raise ValueError(f"nis_fast: the CPU training step needs {name} contiguous with shape {shape}, "
                         f"got {tuple(t.shape)}{'' if t.is_contiguous() else ' (not contiguous)'}")
    return t


def _batch(x, target):
    n = len(x)
    if n == 0:
        raise ValueError("nis_fast: a training batch needs at least one row")
    return _cpu_float32("x", x, (n, 3)), _cpu_float32("target", target, (n,)), n


def loss_grad_cpu(params, x, target, threads: int = 0):
    """(mean |f(x) - target|, its gradient w.r.t. the flat params [7553]) for x [n, 3], target [n], natively.

    The answer is the same for any `threads` (0: OpenMP's default)."""
    x, target, n = _batch(x, target)
    grad = torch.empty(N_PARAMS, dtype=torch.float32)
    total = native.mlp_loss_grad(data_ptr(_cpu_float32("params", params, (N_PARAMS,))), data_ptr(x),
                                 data_ptr(target), n, data_ptr(grad), int(threads))
    return total / n, grad


def train_step_cpu(params, m, v, x, target, *, alpha: float, beta1: float, beta2: float, eps: float,
                   rows=None, loss_params=None, update_mask=None, threads: int = 0) -> float:
    """One native training step, in place on params, m, v [7553]; returns the batch's summed |error|.

    The batch is x [n, 3] / target [n], or with rows (int64 [n]) the rows x[rows], target[rows] of
    larger arrays, read in place. The loss and its gradient are taken at loss_params (default params),
    Adam (step size alpha, as `adam_step_size` gives it) moves params with the gradient times
    update_mask (default ones)."""
    if rows is None:
        x, target, n = _batch(x, target)
        n_points, rows_ptr = n, 0
    else:
        if not (isinstance(rows, torch.Tensor) and rows.dtype == torch.int64 and rows.device.type == "cpu"
                and rows.dim() == 1 and rows.is_contiguous()):
            raise TypeError("nis_fast: the CPU training step needs rows as a contiguous 1-D int64 CPU tensor")
        n, n_points = len(rows), len(x)
        if n == 0:
            raise ValueError("nis_fast: a training batch needs at least one row")
        x, target = _cpu_float32("x", x, (n_points, 3)), _cpu_float32("target", target, (n_points,))
        rows_ptr = data_ptr(rows)
    flat = [_cpu_float32(name, t, (N_PARAMS,)) for name, t in (("params", params), ("m", m), ("v", v))]
    loss_at = flat[0] if loss_params is None else _cpu_float32("loss_params", loss_params, (N_PARAMS,))
    mask = 0 if update_mask is None else data_ptr(_cpu_float32("update_mask", update_mask, (N_PARAMS,)))
    return native.mlp_train_step(data_ptr(loss_at), *(data_ptr(t) for t in flat), mask, data_ptr(x),
                                 data_ptr(target), rows_ptr, n_points, n, float(alpha), float(beta1), float(beta2),
                                 float(eps), int(threads))
