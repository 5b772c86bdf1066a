"""Fitting: mesh -> importance samples -> the 7553-parameter network (Davies et al. 2020).

The default FitConfig is the paper's recipe. Keras semantics are kept where they
matter: Adam with Keras' update (eps added to sqrt(v), bias correction folded
into the step size, eps 1e-7), one shuffle per epoch, a last partial batch, and
ReduceLROnPlateau monitoring the epoch's mean training loss (Keras' `loss`,
min_delta 1e-4, cooldown 0, min_lr 0).

Training backends, chosen once per fit:
- CUDA with nis_fast.kernels importable: the fused Triton loss+gradient and Adam kernels;
- otherwise (CPU, or CUDA without the kernels): `TorchLossGrad`, a compact
  manual forward/backward (addmm into preallocated buffers, one flat gradient
  vector), tested against torch autograd in tests/test_fit.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import network
from .mesh import IDENTITY, Mesh, load_mesh
from .model import NeuralSDF
from .sampling import importance_samples


@dataclass
class FitConfig:
    """A training recipe. FitConfig() is the paper's; see fast() and quick()."""

    pool_size: int = 10_000_000  # uniform points in [-1, 1]^3
    n_samples: int = 1_000_000  # drawn with replacement, p ~ exp(-beta |d|), reused every epoch
    beta: float = 60.0
    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    schedule: str = "plateau"  # "plateau" (Keras ReduceLROnPlateau on the epoch loss) | "cosine" (to lr * lr_final)
    plateau_factor: float = 0.8
    plateau_patience: int = 30
    plateau_min_delta: float = 1e-4
    lr_final: float = 0.01  # cosine only: last epoch's lr as a fraction of lr
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-7
    precision: str = "float32"
    threads: int | None = None  # CPU threads for torch during the fit (None: leave torch's setting)

    def __post_init__(self):
        positive = ("pool_size", "n_samples", "epochs", "batch_size", "lr", "plateau_patience")
        bad = [f"{k}={getattr(self, k)!r}" for k in positive if not getattr(self, k) > 0]
        if self.schedule not in ("plateau", "cosine"):
            bad.append(f"schedule={self.schedule!r} (expected 'plateau' or 'cosine')")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            bad.append(f"threads={self.threads!r} (expected None or an int >= 1)")
        if self.precision != "float32":
            bad.append(f"precision={self.precision!r} (only 'float32' is implemented)")
        if not (0 < self.plateau_factor <= 1 and 0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            bad.append("plateau_factor must be in (0, 1], adam betas in [0, 1)")
        if bad:
            raise ValueError("FitConfig: invalid " + ", ".join(bad))

    @classmethod
    def paper(cls) -> "FitConfig":
        """Davies et al. (2020): 1e7 pool, 1e6 samples, beta 60, 100 epochs, batch 2048, Adam 1e-3, plateau x0.8/30."""
        return cls()

    @classmethod
    def fast(cls) -> "FitConfig":
        """Fewer sample-passes at a bigger batch and lr with a cosine decay; measured in
        benchmarks/bench_fit_accuracy.py to match the paper's recipe on its three metrics."""
        return cls(pool_size=4_000_000, n_samples=1_000_000, epochs=24, batch_size=8192, lr=4e-3, schedule="cosine")

    @classmethod
    def quick(cls) -> "FitConfig":
        """A demo/test recipe: well under a minute on a 2-core CPU, visibly rougher."""
        return cls(pool_size=1_000_000, n_samples=250_000, epochs=8, batch_size=4096, lr=4e-3, schedule="cosine")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- training steps -------------------------------------------------------------------

class TorchLossGrad:
    """L1 loss and its gradient w.r.t. the flat parameters, by a manual forward/backward.

    Same maths as torch autograd on network.forward_torch (the test checks it), with
    every activation and gradient written into buffers allocated once for `max_batch`.
    call(params, x [b, 3], target [b]) -> (mean |f(x) - target| as a 0-d tensor, grad [7553]).
    """

    def __init__(self, max_batch: int, device, dtype=torch.float32):
        self.hidden = [torch.empty(max_batch, fan_out, device=device, dtype=dtype)
                       for _, fan_out in network.LAYER_SIZES[:-1]]
        self.out = torch.empty(max_batch, 1, device=device, dtype=dtype)
        self.grad = torch.zeros(network.N_PARAMS, device=device, dtype=dtype)
        self.grad_layers = network.unflatten(self.grad)

    def __call__(self, params, x, target):
        b = len(x)
        layers = network.unflatten(params)
        acts = [x] + [h[:b] for h in self.hidden]
        for (w, bias), h_in, h_out in zip(layers[:-1], acts[:-1], acts[1:]):
            torch.addmm(bias, h_in, w, out=h_out).relu_()
        y = torch.addmm(layers[-1][1], acts[-1], layers[-1][0], out=self.out[:b]).tanh_()
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
    step_size = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    params.addcdiv_(m, v.sqrt().add_(eps), value=-step_size)


def _fused_kernels():
    """(mlp_loss_and_grad, adam_step_) from nis_fast.kernels, or None when they do not import."""
    try:
        from nis_fast.kernels import adam_step_, mlp_loss_and_grad
    except ImportError:
        return None
    return mlp_loss_and_grad, adam_step_


class _Plateau:
    """Keras ReduceLROnPlateau(monitor='loss', mode='min'): lr *= factor after `patience`
    epochs without the loss dropping below best - min_delta; the wait restarts after a cut."""

    def __init__(self, config: FitConfig):
        self.config, self.best, self.wait = config, math.inf, 0

    def next_lr(self, loss: float, lr: float) -> float:
        if loss < self.best - self.config.plateau_min_delta:
            self.best, self.wait = loss, 0
            return lr
        self.wait += 1
        if self.wait >= self.config.plateau_patience:
            self.wait = 0
            return lr * self.config.plateau_factor
        return lr


def _cosine_lr(config: FitConfig, epoch: int) -> float:
    """lr for `epoch` (0-based): from lr down to lr * lr_final on a half cosine."""
    t = epoch / max(config.epochs - 1, 1)
    low = config.lr * config.lr_final
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * t))


def train(params, points, targets, config: FitConfig, seed: int = 0, progress=None, callback=None):
    """Train flat `params` (in place) on (points, targets) with Adam; returns the per-epoch losses."""
    device = params.device
    kernels = _fused_kernels() if device.type == "cuda" else None
    if kernels:
        loss_and_grad, adam_step = kernels
    else:
        loss_and_grad, adam_step = TorchLossGrad(config.batch_size, device), adam_step_torch
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    shuffle = torch.Generator().manual_seed(int(seed) + 1)
    plateau, lr, step, n = _Plateau(config), config.lr, 0, len(points)
    epoch_x, epoch_t = torch.empty_like(points), torch.empty_like(targets)
    losses = []
    bar = _progress_bar(config.epochs, progress)
    for epoch in range(config.epochs):
        if config.schedule == "cosine":
            lr = _cosine_lr(config, epoch)
        order = torch.randperm(n, generator=shuffle).to(device)
        torch.index_select(points, 0, order, out=epoch_x)
        torch.index_select(targets, 0, order, out=epoch_t)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, n, config.batch_size):
            xb, tb = epoch_x[start:start + config.batch_size], epoch_t[start:start + config.batch_size]
            loss, grad = loss_and_grad(params, xb, tb)
            step += 1
            adam_step(params, grad, m, v, step, lr, config.adam_beta1, config.adam_beta2, config.adam_eps)
            total += loss.detach().double() * len(xb)
        epoch_loss = float(total) / n
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"fit: the loss became {epoch_loss} at epoch {epoch + 1}; lower the lr")
        losses.append(epoch_loss)
        if callback is not None:
            callback(epoch, epoch_loss, lr)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss:.2e}", lr=f"{lr:.1e}")
        if config.schedule == "plateau":
            lr = plateau.next_lr(epoch_loss, lr)
    if bar is not None:
        bar.close()
    return losses


def _progress_bar(total, progress):
    """tqdm bar on stderr; progress=None shows it only when stderr is a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="epoch", file=sys.stderr)


# --- public entry points -------------------------------------------------------------

def default_device() -> torch.device:
    from ._backend import cuda_available

    return torch.device("cuda" if cuda_available() else "cpu")


def _target(mesh, device):
    """(sdf_fn in the unit frame, transform, source description) for a mesh or an analytic SDF."""
    if callable(mesh) and not isinstance(mesh, (Mesh, str)) and not hasattr(mesh, "faces"):
        return mesh, IDENTITY, {"name": getattr(mesh, "__name__", repr(mesh)), "kind": "callable sdf (unit frame)"}
    from .sdf import MeshSDF

    mesh = mesh if isinstance(mesh, Mesh) else load_mesh(mesh)
    digest = hashlib.sha256(mesh.vertices.tobytes() + mesh.faces.tobytes()).hexdigest()
    source = {"name": mesh.name, "sha256": digest, "vertices": len(mesh.vertices), "faces": len(mesh.faces)}
    return MeshSDF(mesh, device=device, space="unit").sdf, mesh.transform, source


def fit(mesh, config: FitConfig | None = None, device=None, seed: int = 0, progress=None, callback=None) -> NeuralSDF:
    """Fit one shape. mesh: anything load_mesh takes, or a callable sdf_fn(points_unit) -> d
    (an analytic SDF in the unit frame). callback(epoch, loss, lr) is called after every epoch.
    Same seed, config and device -> the same samples and weights (bit-exact on the CPU)."""
    config = config or FitConfig()
    device = torch.device(device) if device is not None else default_device()
    with _torch_threads(config.threads):
        return _fit(mesh, config, device, seed, progress, callback)


@contextlib.contextmanager
def _torch_threads(threads):
    """Run with `threads` torch CPU threads, then restore. On a busy machine one thread beats
    two by far: 32-wide layers give each thread microseconds of work between barriers."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(mesh, config, device, seed, progress, callback):
    t0 = time.perf_counter()
    sdf_fn, transform, source = _target(mesh, device)
    points, targets = importance_samples(sdf_fn, config.n_samples, config.pool_size, config.beta, seed, device)
    t1 = time.perf_counter()
    params = torch.from_numpy(network.glorot_uniform(seed)).to(device)
    losses = train(params, points, targets, config, seed, progress, callback)
    t2 = time.perf_counter()
    metadata = {
        "recipe": {**config.to_dict(), "seed": seed, "device": str(device), "torch_threads": torch.get_num_threads(),
                   "final_loss": losses[-1],
                   "seconds": {"sampling": round(t1 - t0, 3), "training": round(t2 - t1, 3)}},
        "source": source,
    }
    return NeuralSDF(params, transform, metadata)


def fit_many(meshes, config: FitConfig | None = None, device=None, seed: int = 0, progress=None,
             callback=None) -> list[NeuralSDF]:
    """Fit several shapes (shape i with seed + i). callback(index, epoch, loss, lr).

    A loop of fit(); the batched multi-shape kernels are used only through fit() today.
    """
    shapes = []
    for i, mesh in enumerate(meshes):
        per_shape = None if callback is None else (lambda e, loss, lr, i=i: callback(i, e, loss, lr))
        shapes.append(fit(mesh, config, device, seed + i, progress, per_shape))
    return shapes
