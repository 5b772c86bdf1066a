"""What int8 weights cost: Chamfer-L1 of float32 fits against the same fits stored as int8, rounded
(naive) or after quantization-aware fine-tuning (FitConfig.quantize_epochs), over meshes and seeds.

For each mesh and seed: one fit (the recipe, default `fast`) on its importance samples; then, from the
same weights, (a) rounded to int8, (b) quantize_epochs more epochs with the weights rounded as int8 holds
them (straight-through) and quantize_bias_epochs with only the biases trained, and as a control (c) as many
plain float32 epochs at the same lr, to tell what the rounding-aware training buys from what more training buys. Chamfer-L1 between the mesh and
the network's marching-cubes surface (metrics.chamfer_hausdorff), unit frame, and the bytes of each .nis.

    python benchmarks/bench_quantize.py [--meshes spot.obj armadillo.obj] [--seeds 0 1 2] [--quick]
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SHARED, parser, report  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast import metrics  # noqa: E402
from nis_fast.core.layout import glorot_uniform  # noqa: E402
from nis_fast.core.quantize import dequantize, quantize  # noqa: E402
from nis_fast.sampling import importance_samples  # noqa: E402

fit_module = importlib.import_module("nis_fast.fit")
RECIPES = {"paper": nf.FitConfig.paper, "fast": nf.FitConfig.fast, "quick": nf.FitConfig.quick}


def nis_bytes(params, dtype: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "s.nis")
        nf.NeuralSDF(params).save(path, dtype=dtype)
        return os.path.getsize(path)


def fit_on_samples(sdf_fn, config: nf.FitConfig, seed: int):
    """(points, targets, weights [1, 7553]) of one fit on its own importance samples (fit's training loop)."""
    points, targets = importance_samples(sdf_fn, config.n_samples, config.pool_size, config.beta, seed,
                                         uniform_fraction=config.uniform_fraction)
    weights = torch.from_numpy(glorot_uniform(seed))[None]
    fit_module.train(weights, points[None], targets[None], config, seed)
    return points, targets, weights


def trained_further(weights, points, targets, config: nf.FitConfig, seed: int) -> torch.Tensor:
    """A copy of the fitted weights [7553] trained on with `config` (quantization-aware fine-tuning, or plain
    epochs), its epochs shuffled unlike the fit's own (seed + 100)."""
    more = weights.clone()
    fit_module.train(more, points[None], targets[None], config, seed + 100)
    return more[0]


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--meshes", nargs="+", default=["spot.obj", "thingi10k_32770.stl", "fandisk.obj"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="fast")
    ap.add_argument("--quantize-epochs", type=int, default=5)
    ap.add_argument("--quantize-lr", type=float, default=nf.FitConfig.quantize_lr)
    ap.add_argument("--resolution", type=int, default=256, help="marching cubes for the Chamfer distance")
    args = ap.parse_args()
    if args.quick:
        args.meshes, args.seeds, args.recipe, args.resolution = args.meshes[:1], args.seeds[:1], "quick", 128
    torch.set_num_threads(1)
    config = RECIPES[args.recipe]()
    more = {"epochs": 0, "quantize_epochs": args.quantize_epochs, "quantize_lr": args.quantize_lr}
    aware_config = nf.FitConfig(**{**config.to_dict(), **more})
    # The control: as many epochs (the quantization-aware ones and the bias-only ones after them) without the
    # rounding, on a cosine decay from quantize_lr.
    control_config = nf.FitConfig(**{**config.to_dict(), "epochs": args.quantize_epochs + aware_config.quantize_bias_epochs,
                                     "lr": args.quantize_lr, "schedule": "cosine"})
    rows = []
    for name in args.meshes:
        mesh = nf.load_mesh(SHARED / "meshes" / name, warn=False)
        sdf = nf.MeshSDF(mesh, space="unit")
        for seed in args.seeds:
            points, targets, trained = fit_on_samples(sdf.sdf, config, seed)
            runs = {"float32": trained[0].clone(),
                    "int8 rounded": torch.from_numpy(dequantize(quantize(trained[0].numpy()))),
                    "int8 quantization-aware": trained_further(trained, points, targets, aware_config, seed),
                    "float32 + control epochs": trained_further(trained, points, targets, control_config, seed)}
            for label, params in runs.items():
                chamfer, hausdorff = metrics.chamfer_hausdorff(nf.NeuralSDF(params, mesh.transform), mesh,
                                                               n=200_000, resolution=args.resolution)
                dtype = "int8" if label.startswith("int8") else "float32"
                rows.append({"mesh": name, "seed": seed, "weights": label, "bytes": nis_bytes(params, dtype),
                             "chamfer": chamfer, "hausdorff": hausdorff})
                print(rows[-1], flush=True)
    for label in ("int8 rounded", "int8 quantization-aware", "float32 + control epochs"):
        ratios = [r["chamfer"] / f["chamfer"] for r in rows if r["weights"] == label
                  for f in rows if f["weights"] == "float32" and (f["mesh"], f["seed"]) == (r["mesh"], r["seed"])]
        rows.append({"mesh": "all", "seed": "-", "weights": f"{label} / float32 (median, max)",
                     "bytes": "-", "chamfer": float(np.median(ratios)), "hausdorff": float(np.max(ratios))})
    report("bench_quantize", ["mesh", "seed", "weights", "bytes", "chamfer", "hausdorff"], rows, out=args.out,
           notes=[f"recipe {args.recipe}; {args.quantize_epochs} quantization-aware epochs and "
                  f"{aware_config.quantize_bias_epochs} bias-only ones from lr {args.quantize_lr} (cosine), and as many "
                  "plain ones for the control; Chamfer-L1 and Hausdorff from 200k surface "
                  f"samples a side, marching cubes at {args.resolution}^3, unit frame",
                  "the 'all' rows give chamfer ratios against float32 (median in chamfer, max in hausdorff)"])


if __name__ == "__main__":
    main()
