"""The paper's recipe as nis_fast runs it (FitConfig.paper()) against the plain PyTorch version a user would write
from the paper's text: nn.Sequential with torch's default init, torch.optim.Adam, ReduceLROnPlateau on the epoch's
loss; the same importance samples, epochs, batch and schedule. Accuracy over meshes and seeds (the paper's surface
error and importance-sample L1, unit frame), and the wall time of each fit's training.

    python benchmarks/bench_paper_recipe.py [--meshes spot.obj fandisk.obj ...] [--seeds 0 1 2] [--quick]
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SHARED, parser, report  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast import metrics  # noqa: E402
from nis_fast.core.layout import LAYER_SIZES, N_PARAMS, OFFSETS, glorot_uniform  # noqa: E402
from nis_fast.sampling import importance_samples  # noqa: E402

fit_module = importlib.import_module("nis_fast.fit")


def plain_model() -> torch.nn.Sequential:
    """The network as a user writes it: Linear layers with torch's default init, ReLU, tanh on the output."""
    layers = []
    for fan_in, fan_out in LAYER_SIZES:
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1], torch.nn.Tanh())


def plain_fit(config: nf.FitConfig, points, targets, seed: int) -> np.ndarray:
    """Train plain_model() on the samples with torch.optim.Adam and ReduceLROnPlateau; its flat parameters."""
    torch.manual_seed(seed)
    model = plain_model()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=config.plateau_factor,
                                                         patience=config.plateau_patience)
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        order, total = torch.randperm(len(points), generator=shuffle), 0.0
        for start in range(0, len(points), config.batch_size):
            rows = order[start:start + config.batch_size]
            opt.zero_grad()
            loss = (model(points[rows])[:, 0] - targets[rows]).abs().mean()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        plateau.step(total / len(points))
    params = np.zeros(N_PARAMS, np.float32)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    for linear, (fan_in, fan_out), (w, b) in zip(linears, LAYER_SIZES, OFFSETS):
        params[w:w + fan_in * fan_out] = linear.weight.detach().numpy().T.reshape(-1)
        params[b:b + fan_out] = linear.bias.detach().numpy()
    return params


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--meshes", nargs="+", default=["spot.obj", "fandisk.obj", "thingi10k_32770.stl"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    config = nf.FitConfig.paper()
    if args.quick:
        args.meshes, args.seeds = args.meshes[:1], args.seeds[:1]
        config = nf.FitConfig(pool_size=200_000, n_samples=50_000, epochs=3)
    torch.set_num_threads(1)
    rows = []
    for name in args.meshes:
        mesh = nf.load_mesh(SHARED / "meshes" / name, warn=False)
        sdf = nf.MeshSDF(mesh, space="unit")
        for seed in args.seeds:
            points, targets = importance_samples(sdf.sdf, config.n_samples, config.pool_size, config.beta, seed)
            ours = torch.from_numpy(glorot_uniform(seed))[None]
            t0 = time.perf_counter()
            fit_module.train(ours, points[None], targets[None], config, seed)
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            plain = plain_fit(config, points, targets, seed)
            t_plain = time.perf_counter() - t0
            for label, params, seconds in (("nis_fast paper", ours[0], t_ours), ("plain PyTorch", plain, t_plain)):
                shape = nf.NeuralSDF(params, mesh.transform)
                rows.append({"mesh": name, "seed": seed, "fit": label, "training_s": seconds,
                             "surface_error": metrics.surface_error(shape, mesh, seed=seed),
                             "importance_l1": metrics.importance_l1(shape, mesh, seed=seed + 12345, sdf_fn=sdf.sdf)})
                print(rows[-1], flush=True)
    for metric in ("surface_error", "importance_l1"):
        pairs = [(p[metric], o[metric]) for p in rows if p["fit"] == "plain PyTorch" for o in rows
                 if o["fit"] == "nis_fast paper" and (o["mesh"], o["seed"]) == (p["mesh"], p["seed"])]
        ratios = [p / o for p, o in pairs]
        rows.append({"mesh": "all", "seed": "-", "fit": f"plain / nis_fast, {metric}: median (min-max)",
                     "training_s": "-", "surface_error": float(np.median(ratios)),
                     "importance_l1": f"{min(ratios):.3g}-{max(ratios):.3g}"})
    report("bench_paper_recipe", ["mesh", "seed", "fit", "training_s", "surface_error", "importance_l1"], rows,
           out=args.out, notes=["the same samples and schedule for both; unit frame, lower is better; one torch "
                                "thread", "'all' rows: ratios plain / nis_fast (> 1: nis_fast is more accurate)"])


if __name__ == "__main__":
    main()
