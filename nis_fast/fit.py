"""Fitting: mesh -> importance samples -> the 7553-parameter network (Davies et al. 2020).

The default FitConfig is the paper's recipe. Keras semantics are kept where they
matter: Adam with Keras' update (eps added to sqrt(v), bias correction folded
into the step size, eps 1e-7), one shuffle per epoch, a last partial batch, and
ReduceLROnPlateau monitoring the epoch's mean training loss (Keras' `loss`,
min_delta 1e-4, cooldown 0, min_lr 0).

Training backends, chosen once per fit (`training_backend`):
- "triton", on CUDA with nis_fast.kernels importable: the fused Triton loss+gradient and Adam
  kernels, each epoch's steps replayed from a CUDA graph (FitConfig.cuda_graphs);
- "native", on the CPU: one call of csrc/cpu/train.cpp a step (forward, loss, backward, Adam);
- "torch", with FitConfig(trainer="torch") or on CUDA without the kernels: the reference path,
  `nis_fast.ops.mlp.TorchLossGrad` (a manual forward/backward into preallocated buffers) and
  `adam_step_torch`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from .core.adam import adam_step_size
from .core.layout import glorot_uniform, is_bias
from .core.normalization import IDENTITY
from .core.precision import TRAINING_PRECISIONS, training_kernel_precision
from .core.quantize import fake_quantize
from .mesh import Mesh, load_mesh
from .mesh_sdf import MeshSDF
from .model import NeuralSDF
from .ops.mlp import TorchLossGrad, adam_step_torch, train_step_cpu
from .ops.native import DEFAULT_CPU_THREADS, cuda_available
from .sampling import importance_samples


TRAINERS = ("auto", "torch")


@dataclass
class FitConfig:
    """A training recipe. FitConfig() is the paper's; see fast() and quick()."""

    pool_size: int = 10_000_000  # uniform points in [-1, 1]^3
    n_samples: int = 1_000_000  # drawn with replacement, p ~ exp(-beta |d|), reused every epoch
    beta: float = 60.0
    uniform_fraction: float = 0.0  # share of the samples drawn uniformly from the pool instead (paper: 0)
    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    schedule: str = "plateau"  # "plateau" (Keras ReduceLROnPlateau on the epoch loss) | "cosine" (to lr * lr_final)
    plateau_factor: float = 0.8
    plateau_patience: int = 30
    plateau_min_delta: float = 1e-4
    lr_final: float = 0.01  # the cosine decays' last lr as a fraction of their first (schedule "cosine", quantize_epochs)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-7
    precision: str = "float32"  # matmul operands: float32 | tf32x3 | tf32 | float16 | bfloat16 (all but float32:
    #                             the fused kernels on CUDA only; float32 runs as tf32x3 there: training_kernel_precision)
    threads: int | None = None  # CPU threads of a CPU fit; None: all of OpenMP's (native), 1 (torch: _torch_threads)
    trainer: str = "auto"  # "auto": the fastest training path on the device (training_backend) | "torch"
    cuda_graphs: bool = True  # fused-kernel fits on CUDA replay each epoch's steps as one CUDA graph (_KernelEpochs)
    # Quantization-aware fine-tuning for int8 files: after the schedule, quantize_epochs epochs with the
    # weights rounded as an int8 file stores them (core.quantize.fake_quantize, straight-through gradient),
    # then quantize_bias_epochs with the weights fixed on their grid and only the (float16) biases trained,
    # which moves the level set back where the rounding shifted it; each phase's lr decays from quantize_lr
    # on a half cosine (to quantize_lr * lr_final). The fitted weights are then exactly representable:
    # shape.save(path, dtype="int8") loses nothing. The settings measured: benchmarks/RESULTS.md.
    quantize_epochs: int = 0
    quantize_bias_epochs: int = 2  # only after quantize_epochs > 0
    quantize_lr: float = 1e-4

    def __post_init__(self):
        positive = ("pool_size", "n_samples", "batch_size", "lr", "plateau_patience")
        bad = [f"{k}={getattr(self, k)!r}" for k in positive if not getattr(self, k) > 0]
        quantize_ok = all(isinstance(n, int) and n >= 0 for n in (self.quantize_epochs, self.quantize_bias_epochs))
        if not (isinstance(self.epochs, int) and self.epochs >= 0
                and self.epochs + (self.quantize_epochs if quantize_ok else 0) > 0):
            bad.append(f"epochs={self.epochs!r} (expected an int >= 0; 0 only with quantize_epochs, which then "
                       "fine-tunes the weights it is given: fit.train)")
        if self.schedule not in ("plateau", "cosine"):
            bad.append(f"schedule={self.schedule!r} (expected 'plateau' or 'cosine')")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            bad.append(f"threads={self.threads!r} (expected None or an int >= 1)")
        if self.trainer not in TRAINERS:
            bad.append(f"trainer={self.trainer!r} (expected one of {', '.join(TRAINERS)})")
        if not (quantize_ok and self.quantize_lr > 0):
            bad.append(f"quantize_epochs={self.quantize_epochs!r}, quantize_bias_epochs={self.quantize_bias_epochs!r}, "
                       f"quantize_lr={self.quantize_lr!r} (expected ints >= 0 and a positive lr)")
        if not isinstance(self.cuda_graphs, bool):
            bad.append(f"cuda_graphs={self.cuda_graphs!r} (expected True or False)")
        if self.precision not in TRAINING_PRECISIONS:
            bad.append(f"precision={self.precision!r} (expected one of {sorted(TRAINING_PRECISIONS)})")
        if not 0 <= self.uniform_fraction < 1:
            bad.append(f"uniform_fraction={self.uniform_fraction!r} (expected 0 <= f < 1)")
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
        """A cheaper recipe for the CPU: a 2e6 pool (5x fewer exact distances), 1% of the samples
        uniform over the pool (the far field: the paper's grid metric), and 30 epochs with a cosine
        decay from lr 2e-3 (30% of the paper's sample-passes); benchmarks/bench_fit_accuracy.py compares
        it with the paper's recipe and released networks (benchmarks/RESULTS.md)."""
        return cls(pool_size=2_000_000, n_samples=1_000_000, uniform_fraction=0.01, epochs=30, batch_size=2048,
                   lr=2e-3, schedule="cosine")

    @classmethod
    def quick(cls) -> "FitConfig":
        """A demo/test recipe: well under a minute on a 2-core CPU, visibly rougher."""
        return cls(pool_size=1_000_000, n_samples=250_000, epochs=8, batch_size=4096, lr=4e-3, schedule="cosine")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- training steps -------------------------------------------------------------------

def _check_precision(device, config: FitConfig) -> None:
    backend = training_backend(device, config.trainer)
    if config.precision != "float32" and backend != "triton":
        raise ValueError(f"FitConfig.precision={config.precision!r} needs the fused kernels on a CUDA device; "
                         f"training on {device} runs the {backend} path in float32")


def training_backend(device, trainer: str = "auto") -> str:
    """Which training path fit() takes on `device` with FitConfig.trainer: 'triton' (the fused kernels on
    CUDA), 'native' (the CPU training step) or 'torch' (the reference path)."""
    if trainer == "torch":
        return "torch"
    if torch.device(device).type == "cpu":
        return "native"
    return "triton" if _fused_kernels() else "torch"


def _fused_kernels():
    """(mlp_loss_and_grad, adam_update_) from nis_fast.kernels, or None when they do not import."""
    try:
        from nis_fast.kernels import adam_update_, mlp_loss_and_grad
    except ImportError:
        return None
    return mlp_loss_and_grad, adam_update_


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


def _cosine_lr(lr: float, lr_final: float, epoch: int, epochs: int) -> float:
    """lr for `epoch` (0-based) of `epochs`: from lr down to lr * lr_final on a half cosine."""
    t = epoch / max(epochs - 1, 1)
    low = lr * lr_final
    return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * t))


class _Epochs:
    """The steps of one epoch over the samples points [S, n, 3] / targets [S, n] in the order `shuffle` set,
    updating params [S, 7553] (and the Adam moments m, v) in place: run(lrs, first_step) -> each shape's
    summed |error| over the epoch, as a device tensor [S] (float64)."""

    def __init__(self, params, points, targets, config: FitConfig):
        self.params, self.points, self.targets = params, points, targets
        self.epoch_x = self.epoch_t = None  # the shuffled copies, made by the first shuffle
        self.m, self.v = torch.zeros_like(params), torch.zeros_like(params)
        n, b = points.shape[1], config.batch_size
        self.batches = [(start, min(start + b, n)) for start in range(0, n, b)]  # Keras keeps the last partial one
        self.hyper = (config.adam_beta1, config.adam_beta2, config.adam_eps)
        self.total = torch.zeros(len(params), dtype=torch.float64, device=params.device)
        self.rounded = None  # once quantization-aware: the weights as an int8 file holds them, what the loss sees
        self.update_mask = None  # once biases only: 1 on the biases, 0 on the weights

    def shuffle(self, s: int, order) -> None:
        """Shape s's samples in the order of this epoch: copied into epoch_x / epoch_t, which the steps read."""
        if self.epoch_x is None:
            self.epoch_x, self.epoch_t = torch.empty_like(self.points), torch.empty_like(self.targets)
        torch.index_select(self.points[s], 0, order, out=self.epoch_x[s])
        torch.index_select(self.targets[s], 0, order, out=self.epoch_t[s])

    def quantization_aware(self):
        """From now on the loss and its gradient are taken at the int8-rounded weights, and Adam updates the
        float weights with that gradient (straight through the rounding)."""
        self.rounded = torch.empty_like(self.params)

    def biases_only(self):
        """From now on only the biases move: the weights' gradient and Adam moments are zeroed, so the
        weights stay where they are (on the int8 grid)."""
        self.update_mask = torch.from_numpy(is_bias()).to(device=self.params.device, dtype=self.params.dtype)
        self.m.mul_(self.update_mask)
        self.v.mul_(self.update_mask)

    def masked(self, grad):
        return grad if self.update_mask is None else grad.mul_(self.update_mask)

    def weights_for_the_loss(self):
        if self.rounded is None:
            return self.params
        self.rounded.copy_(fake_quantize(self.params))
        return self.rounded


class _TorchEpochs(_Epochs):
    """TorchLossGrad and adam_step_torch, one shape."""

    def __init__(self, params, points, targets, config: FitConfig):
        if len(params) != 1:
            raise ValueError("the PyTorch training path fits one shape at a time")
        super().__init__(params, points, targets, config)
        self.loss_and_grad = TorchLossGrad(config.batch_size, params.device)

    def run(self, lrs, first_step):
        p, m, v = self.params[0], self.m[0], self.v[0]
        self.total.zero_()
        for j, (start, stop) in enumerate(self.batches):
            loss, grad = self.loss_and_grad(self.weights_for_the_loss()[0], self.epoch_x[0, start:stop],
                                            self.epoch_t[0, start:stop])
            adam_step_torch(p, self.masked(grad), m, v, first_step + j + 1, lrs[0], *self.hyper)
            self.total.add_(loss.detach(), alpha=stop - start)
        return self.total


class _NativeEpochs(_Epochs):
    """The CPU training step of csrc/cpu/train.cpp, one shape: each step one native call, which reads its
    batch through the epoch's order (no shuffled copy of the samples)."""

    def __init__(self, params, points, targets, config: FitConfig):
        if len(params) != 1:
            raise ValueError("the CPU training path fits one shape at a time")
        super().__init__(params, points, targets, config)
        self.threads = config.threads or DEFAULT_CPU_THREADS
        self.order = None

    def shuffle(self, s: int, order) -> None:
        self.order = order

    def run(self, lrs, first_step):
        beta1, beta2, eps = self.hyper
        total = 0.0
        for j, (start, stop) in enumerate(self.batches):
            total += train_step_cpu(self.params[0], self.m[0], self.v[0], self.points[0], self.targets[0],
                                    rows=self.order[start:stop],
                                    alpha=adam_step_size(lrs[0], first_step + j + 1, beta1, beta2),
                                    beta1=beta1, beta2=beta2, eps=eps, loss_params=self.weights_for_the_loss()[0],
                                    update_mask=self.update_mask, threads=self.threads)
        self.total.fill_(total)
        return self.total


class _KernelEpochs(_Epochs):
    """The fused kernels, S shapes in each launch. Each step's Adam step size (one per shape) is read from
    a table the host fills once an epoch, so an epoch is the same launches every time: with
    config.cuda_graphs on CUDA they are captured as one CUDA graph in the second epoch (the first compiles
    the kernels) and replayed from then on, which takes the host out of the steps: at the paper's batch
    a launch from Python costs about as much as the kernels' own GPU time (benchmarks/RESULTS.md)."""

    def __init__(self, params, points, targets, config: FitConfig, kernels):
        super().__init__(params, points, targets, config)
        loss_and_grad, self.adam_update = kernels
        precision = training_kernel_precision(config.precision, params.device)
        self.loss_and_grad = lambda p, x, t: loss_and_grad(p, x, t, precision=precision)
        self.alphas = torch.empty(len(self.batches), len(params), dtype=torch.float32, device=params.device)
        self.use_graph = config.cuda_graphs and params.device.type == "cuda"
        self.graph, self.warm = None, False

    def quantization_aware(self):
        super().quantization_aware()
        self.graph, self.warm = None, False  # the captured epoch has no rounding in it: capture anew

    def biases_only(self):
        super().biases_only()
        self.graph, self.warm = None, False  # nor the mask

    def steps(self):
        self.total.zero_()
        for j, (start, stop) in enumerate(self.batches):
            xb, tb = self.epoch_x[:, start:stop], self.epoch_t[:, start:stop]
            if len(self.params) > 1:  # a batch of a stack is strided; the kernels want it contiguous
                xb, tb = xb.contiguous(), tb.contiguous()
            loss, grad = self.loss_and_grad(self.weights_for_the_loss(), xb, tb)
            self.adam_update(self.params, self.masked(grad), self.m, self.v, self.alphas[j], *self.hyper)
            self.total.add_(loss.detach(), alpha=stop - start)  # float64 += float32 loss x rows: one kernel

    def run(self, lrs, first_step):
        beta1, beta2, _ = self.hyper
        table = [[adam_step_size(lr, first_step + j + 1, beta1, beta2) for lr in lrs] for j in range(len(self.batches))]
        self.alphas.copy_(torch.tensor(table, dtype=torch.float32))
        if self.use_graph and self.warm and self.graph is None:
            self.graph = self._capture()
            self.use_graph = self.graph is not None
        if self.graph is not None:
            self.graph.replay()
        else:
            self.steps()
            self.warm = True
        return self.total

    def _capture(self):
        """The epoch's launches recorded (not run) as a CUDA graph, or None with a warning where the capture
        is refused. torch.cuda.graph leaves its capture stream current when ending the capture fails, so
        the caller's stream is restored here whatever happens."""
        caller = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(caller)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                self.steps()
            return graph
        except RuntimeError as exc:
            warnings.warn(f"fit: capturing an epoch as a CUDA graph failed ({exc}); training without graphs "
                          "(FitConfig(cuda_graphs=False) skips the attempt)", RuntimeWarning, stacklevel=3)
            return None
        finally:
            torch.cuda.set_stream(caller)


def _epochs(params, points, targets, config: FitConfig) -> _Epochs:
    backend = training_backend(params.device, config.trainer)
    if backend == "triton":
        return _KernelEpochs(params, points, targets, config, _fused_kernels())
    if backend == "native":
        return _NativeEpochs(params, points, targets, config)
    return _TorchEpochs(params, points, targets, config)


def _seeds(seed, count: int) -> list[int]:
    """Each shape's seed: seed + i for an int, else the list given (one per shape)."""
    seeds = [int(seed) + i for i in range(count)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"{len(seeds)} seeds for {count} shapes")
    return seeds


def train(params, points, targets, config: FitConfig, seed: int = 0, progress=None, callback=None):
    """Train S networks in place with Adam, each on its own samples; returns per-epoch losses [epochs][S].

    params [S, 7553], points [S, n, 3], targets [S, n] (S > 1 needs the fused kernels, on CUDA).
    Shape s is shuffled with seed + s, or seed[s] for a list (as fit(mesh_s, seed=that) would be), by a generator on the
    samples' device. callback(shape_index, epoch, loss, lr) after every epoch. Each shape has its own lr
    schedule; config.quantize_epochs more epochs follow it, quantization-aware, then
    config.quantize_bias_epochs training the biases alone, and leave params rounded as an int8 file holds them.
    """
    S, n, device = len(params), points.shape[1], params.device
    epochs = _epochs(params, points, targets, config)
    shuffles = [torch.Generator(device=device).manual_seed(s + 1) for s in _seeds(seed, S)]
    plateaus, lrs, step = [_Plateau(config) for _ in range(S)], [config.lr] * S, 0
    history = []
    aware_end = config.epochs + config.quantize_epochs
    total = aware_end + (config.quantize_bias_epochs if config.quantize_epochs else 0)
    bar = _progress_bar(total, progress)
    for epoch in range(total):
        if epoch == config.epochs:
            epochs.quantization_aware()
        if epoch == aware_end:
            params.copy_(fake_quantize(params))
            epochs.biases_only()
        if epoch >= aware_end:
            lrs = [_cosine_lr(config.quantize_lr, config.lr_final, epoch - aware_end, total - aware_end)] * S
        elif epoch >= config.epochs:
            lrs = [_cosine_lr(config.quantize_lr, config.lr_final, epoch - config.epochs, config.quantize_epochs)] * S
        elif config.schedule == "cosine":
            lrs = [_cosine_lr(config.lr, config.lr_final, epoch, config.epochs)] * S
        for s in range(S):  # one shuffle per shape and epoch, as Keras does
            epochs.shuffle(s, torch.randperm(n, generator=shuffles[s], device=device))
        losses = (epochs.run(lrs, step) / n).tolist()
        step += len(epochs.batches)
        if not all(math.isfinite(x) for x in losses):
            raise FloatingPointError(f"fit: the loss became {losses} at epoch {epoch + 1}; lower the lr")
        history.append(losses)
        for s in range(S):
            if callback is not None:
                callback(s, epoch, losses[s], lrs[s])
            if config.schedule == "plateau" and epoch < config.epochs:
                lrs[s] = plateaus[s].next_lr(losses[s], lrs[s])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{max(losses):.2e}", lr=f"{max(lrs):.1e}")
    if bar is not None:
        bar.close()
    if config.quantize_epochs:
        params.copy_(fake_quantize(params))
    return history


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
    return torch.device("cuda" if cuda_available() else "cpu")


def _target(mesh, device):
    """(sdf_fn in the unit frame, transform, source description) for a mesh or an analytic SDF."""
    if callable(mesh) and not isinstance(mesh, (Mesh, str)) and not hasattr(mesh, "faces"):
        return mesh, IDENTITY, {"name": getattr(mesh, "__name__", repr(mesh)), "kind": "callable sdf (unit frame)"}
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
    _check_precision(device, config)  # an impossible precision fails now, not after the sampling
    with _torch_threads(config.threads, device):
        return _fit(mesh, config, device, seed, progress, callback)


@contextlib.contextmanager
def _torch_threads(threads, device):
    """Run a CPU fit with `threads` torch threads (default 1), then restore torch's setting.

    Why 1: a 32-wide layer gives each OpenMP thread microseconds of work between barriers, so a
    second thread gains little, and when another process takes a core the spinning threads
    collapse (benchmarks/RESULTS.md). CUDA fits leave the setting alone."""
    before = torch.get_num_threads()
    if threads is None and device.type == "cpu":
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _samples(mesh, config, device, seed):
    """(points, targets, transform, source, seconds) of one shape's training set; seconds: "sampling" in
    all, and "mesh_setup" of it (loading, hashing, the BVH build and upload)."""
    t0 = time.perf_counter()
    sdf_fn, transform, source = _target(mesh, device)
    t1 = time.perf_counter()
    points, targets = importance_samples(sdf_fn, config.n_samples, config.pool_size, config.beta, seed, device,
                                         uniform_fraction=config.uniform_fraction)
    return points, targets, transform, source, {"sampling": time.perf_counter() - t0, "mesh_setup": t1 - t0}


def _neural_sdf(params, transform, source, config, device, seed, final_loss, seconds) -> NeuralSDF:
    backend = training_backend(device, config.trainer)
    recipe = {**config.to_dict(), "seed": seed, "device": str(device), "backend": backend,
              "kernel_precision": training_kernel_precision(config.precision, device) if backend == "triton" else None,
              "torch_threads": torch.get_num_threads(),
              "final_loss": final_loss, "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    return NeuralSDF(params, transform, {"recipe": recipe, "source": source})


def _fit(mesh, config, device, seed, progress, callback):
    points, targets, transform, source, sampling_seconds = _samples(mesh, config, device, seed)
    t0 = time.perf_counter()
    params = torch.from_numpy(glorot_uniform(seed)).to(device)[None]
    per_shape = None if callback is None else (lambda s, epoch, loss, lr: callback(epoch, loss, lr))
    history = train(params, points[None], targets[None], config, seed, progress, per_shape)
    seconds = {**sampling_seconds, "training": time.perf_counter() - t0}
    return _neural_sdf(params[0], transform, source, config, device, seed, history[-1][0], seconds)


def fit_many(meshes, config: FitConfig | None = None, device=None, seed: int | list = 0, progress=None,
             callback=None) -> list[NeuralSDF]:
    """Fit several shapes (shape i with seed + i, or seed[i] for a list); callback(index, epoch, loss, lr).

    On CUDA with nis_fast.kernels: all shapes train together, one kernel launch per step for the
    whole stack ([S, 7553] parameters). Elsewhere: one fit() after another.
    """
    config = config or FitConfig()
    device = torch.device(device) if device is not None else default_device()
    meshes = list(meshes)
    seeds = _seeds(seed, len(meshes))
    if training_backend(device, config.trainer) != "triton" or len(meshes) < 2:
        return [fit(mesh, config, device, seeds[i], progress,
                    None if callback is None else (lambda e, loss, lr, i=i: callback(i, e, loss, lr)))
                for i, mesh in enumerate(meshes)]
    sets = [_samples(mesh, config, device, seeds[i]) for i, mesh in enumerate(meshes)]
    t0 = time.perf_counter()
    params = torch.stack([torch.from_numpy(glorot_uniform(s)) for s in seeds]).to(device)
    history = train(params, torch.stack([s[0] for s in sets]), torch.stack([s[1] for s in sets]), config, seeds,
                    progress, callback)
    training_s = (time.perf_counter() - t0) / len(meshes)  # each shape's share of the batched run
    return [_neural_sdf(params[i], transform, source, config, device, seeds[i], history[-1][i],
                   {**sampling_seconds, "training": training_s})
            for i, (_, _, transform, source, sampling_seconds) in enumerate(sets)]
