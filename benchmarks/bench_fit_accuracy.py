"""Fit accuracy and time against the paper's own released networks, shape for shape.

For each mesh with released weights (thingi10k 32770, 37825, 70375): fit it here with a recipe
(--recipe paper|fast|quick), then report for ours and for the paper's file the paper's three
metrics (nis_fast.metrics: mean |f| at 100k surface points, L1 on a 128^3 grid, L1 on 100k fresh
importance samples; unit frame, lower is better) and our fit's wall time (sampling + training).
A second table times one epoch of our training loops (the native CPU step that fit runs, and the
PyTorch reference path) against the loop a user would write in plain PyTorch (nn.Sequential,
autograd, torch.optim.Adam) at the recipe's batch size.

    python benchmarks/bench_fit_accuracy.py --recipe fast [--threads 1] [--meshes 32770 70375] [--seeds 0 1 2]
        [--trainer torch]   # the PyTorch reference training path instead of the native CPU step
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paper_recipe import plain_model  # noqa: E402
from harness import SHARED, parser, report, warm_up_fit  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast import metrics  # noqa: E402
from nis_fast.core import layout as network  # noqa: E402
from nis_fast.fit import FitConfig, default_device  # noqa: E402
from nis_fast.core.adam import adam_step_size  # noqa: E402
from nis_fast.ops.mlp import TorchLossGrad, adam_step_torch, train_step_cpu  # noqa: E402

MESH_IDS = ["32770", "37825", "70375"]
RECIPES = {"paper": FitConfig.paper, "fast": FitConfig.fast, "quick": FitConfig.quick}


def plain_torch_epoch_seconds(config: FitConfig, points, targets, batches: int) -> float:
    """Seconds per epoch of the loop a user would write: nn.Sequential + autograd + torch.optim.Adam."""
    model = plain_model()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    b = config.batch_size
    t0 = time.perf_counter()
    for i in range(batches):
        xb, tb = points[i * b:(i + 1) * b], targets[i * b:(i + 1) * b]
        opt.zero_grad()
        loss = (model(xb)[:, 0] - tb).abs().mean()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / batches * (len(points) / b)


def ours_epoch_seconds(config: FitConfig, points, targets, batches: int, trainer: str) -> float:
    """Seconds per epoch of fit's CPU loop: trainer "native" (csrc/cpu/train.cpp) or "torch" (TorchLossGrad)."""
    params = torch.from_numpy(network.glorot_uniform(0))
    step = TorchLossGrad(config.batch_size, "cpu")
    m, v, b = torch.zeros_like(params), torch.zeros_like(params), config.batch_size
    hyper = config.adam_beta1, config.adam_beta2, config.adam_eps
    t0 = time.perf_counter()
    for i in range(batches):
        xb, tb = points[i * b:(i + 1) * b], targets[i * b:(i + 1) * b]
        if trainer == "native":
            train_step_cpu(params, m, v, xb, tb, alpha=adam_step_size(config.lr, i + 1, *hyper[:2]), beta1=hyper[0],
                           beta2=hyper[1], eps=hyper[2], threads=config.threads or 0)
        else:
            loss, grad = step(params, xb, tb)
            adam_step_torch(params, grad, m, v, i + 1, config.lr, *hyper)
    return (time.perf_counter() - t0) / batches * (len(points) / b)


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None, help="default: fast (quick with --quick)")
    p.add_argument("--meshes", nargs="+", default=MESH_IDS)
    p.add_argument("--threads", type=int, default=None, help="CPU threads of CPU fits (default: fit's, all cores); "
                   "the PyTorch loops of the timing table run at this many torch threads (default 1)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="one fit per mesh and seed")
    p.add_argument("--trainer", choices=("auto", "torch"), default="auto", help="FitConfig.trainer")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="FitConfig fields over the recipe's, e.g. --set epochs=60 lr=0.002 (a recipe under study)")
    args = p.parse_args()
    recipe = args.recipe or ("quick" if args.quick else "fast")
    config = RECIPES[recipe]()
    for item in args.set:
        field, _, value = item.partition("=")
        kind = type(getattr(config, field))
        setattr(config, field, value if kind is str else kind(float(value)) if kind is int else kind(value))
    if args.set:
        recipe += " + " + " ".join(args.set)
    config.threads = args.threads
    config.trainer = args.trainer
    rows, timing_rows = [], []
    warm_up_fit(args.device or default_device())
    for ident in args.meshes:
        mesh_file = SHARED / "meshes" / f"thingi10k_{ident}.stl"
        weights = SHARED / "paper_weights" / f"thingi10k_{ident}_sf.h5"
        if not (mesh_file.exists() and weights.exists()):
            print(f"skipping {ident}: {mesh_file} or {weights} not found")
            continue
        mesh = nf.load_mesh(mesh_file, warn=False)
        exact = nf.MeshSDF(mesh, space="unit").sdf
        row = {"mesh": f"thingi10k_{ident}", "model": "paper (released .h5)",
               **metrics.evaluate(nf.load(weights), mesh, sdf_fn=exact)}
        rows.append(row)
        print(row, flush=True)
        for seed in args.seeds:
            t0 = time.perf_counter()
            ours = nf.fit(mesh, config, device=args.device, seed=seed, progress=False)
            fit_s = time.perf_counter() - t0
            seconds = ours.metadata["recipe"]["seconds"]
            row = {"mesh": f"thingi10k_{ident}", "model": f"nis_fast {recipe}", "seed": seed,
                   "trainer": ours.metadata["recipe"]["backend"],
                   **metrics.evaluate(ours.to("cpu"), mesh, sdf_fn=exact), "fit_s": fit_s,
                   "sampling_s": seconds["sampling"], "mesh_setup_s": seconds["mesh_setup"],
                   "training_s": seconds["training"]}
            rows.append(row)
            print(row, flush=True)

    # Training-loop throughput against plain PyTorch, on the last mesh's first batches (CPU).
    if rows:
        gen = torch.Generator().manual_seed(0)
        n = min(config.n_samples, 64 * config.batch_size)
        points = torch.rand(n, 3, generator=gen) * 2 - 1
        targets = points.norm(dim=1) - 0.5
        batches = n // config.batch_size
        threads_before = torch.get_num_threads()
        torch.set_num_threads(args.threads or 1)
        plain = plain_torch_epoch_seconds(config, points, targets, batches)
        torch_s = ours_epoch_seconds(config, points, targets, batches, "torch")
        torch.set_num_threads(threads_before)
        native_s = ours_epoch_seconds(config, points, targets, batches, "native")
        scale = config.n_samples / n
        timing_rows = [{"loop": "plain PyTorch (nn.Sequential + autograd + optim.Adam)", "epoch_s": plain * scale},
                       {"loop": "nis_fast TorchLossGrad + Keras Adam (trainer='torch')", "epoch_s": torch_s * scale,
                        "speedup": plain / torch_s},
                       {"loop": f"nis_fast native CPU step ({args.threads or 'all'} threads)",
                        "epoch_s": native_s * scale, "speedup": plain / native_s}]
    notes = [f"recipe {recipe}: {config.to_dict()}",
             "metrics in the unit frame (mesh normalised as load_mesh does, as the paper did); lower is better",
             "fit_s includes the SDF of the whole pool (sampling_s; mesh_setup_s of it: hashing, BVH build and upload) "
             "and training (training_s); on CUDA after one "
             "warm-up fit of a sphere (the process's one-time costs are not in it)",
             "the CPU is shared with other jobs unless stated otherwise: times are upper bounds"]
    report("bench_fit_accuracy", ["mesh", "model", "seed", "trainer", "surface_error", "grid_l1", "importance_l1", "chamfer", "fit_s",
                                  "sampling_s", "mesh_setup_s", "training_s"], rows, out=args.out, notes=notes,
           extra={"epoch_timing": timing_rows, "recipe": recipe, "config": config.to_dict()})
    if timing_rows:
        print(f"\n## training loop, one epoch of {config.n_samples} samples at batch {config.batch_size}")
        for r in timing_rows:
            print(f"{r['loop']:<58} {r['epoch_s']:.3f} s" + (f"  ({r['speedup']:.2f}x)" if "speedup" in r else ""))


if __name__ == "__main__":
    main()
