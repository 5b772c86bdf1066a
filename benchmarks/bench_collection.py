"""Collection throughput: shapes per hour of `nis-fast fit-many` (nf.fit_collection: load, hash, sample, train,
write .nis, manifest) over a folder of meshes, against a loop of the plain PyTorch paper recipe over the same
meshes in the same run (the samples from nis_fast's sampler, then nn.Sequential + torch.optim.Adam +
ReduceLROnPlateau: bench_paper_recipe.plain_fit), as the ratio of shapes per hour.

    python benchmarks/bench_collection.py [--folder ../shared/meshes] [--recipe fast|paper|quick] [--quick]
        [--plain-epochs N]   # the plain loop's epochs (its time per shape is scaled to the recipe's)
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paper_recipe import plain_fit  # noqa: E402
from harness import SHARED, parser, report, warm_up_fit  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast.collection import find_inputs  # noqa: E402
from nis_fast.fit import FitConfig, default_device  # noqa: E402
from nis_fast.sampling import importance_samples  # noqa: E402

RECIPES = {"paper": FitConfig.paper, "fast": FitConfig.fast, "quick": FitConfig.quick}


def plain_loop_seconds(items, epochs: int, device) -> tuple[float, int]:
    """Seconds per shape of the plain loop (load, exact-SDF sampling as nis_fast does it, plain PyTorch training
    of the paper's recipe for `epochs` epochs, scaled to the recipe's 100); and how many shapes it ran."""
    paper = FitConfig.paper()
    short = FitConfig(**{**paper.to_dict(), "epochs": epochs})
    total = 0.0
    for item in items:
        t0 = time.perf_counter()
        mesh = nf.load_mesh(item.source, warn=False)
        sdf = nf.MeshSDF(mesh, device=device, space="unit").sdf
        points, targets = importance_samples(sdf, paper.n_samples, paper.pool_size, paper.beta, 0, device)
        t1 = time.perf_counter()
        plain_fit(short, points.cpu(), targets.cpu(), seed=0)
        total += (t1 - t0) + (time.perf_counter() - t1) * paper.epochs / epochs
    return total / len(items), len(items)


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--folder", default=str(SHARED / "meshes"))
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="fast")
    ap.add_argument("--plain-epochs", type=int, default=5, help="epochs the plain loop runs (scaled to 100)")
    ap.add_argument("--plain-shapes", type=int, default=3, help="meshes the plain loop runs (its per-shape time "
                    "is the mean over them)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    device = args.device or str(default_device())
    items = find_inputs([args.folder])
    recipe = "quick" if args.quick else args.recipe
    config = RECIPES[recipe]()
    if args.quick:
        items = items[:3]
    warm_up_fit(device)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        rows = list(nf.fit_collection([args.folder] if not args.quick else [i.source for i in items], out, config,
                                      device=device, evaluate=False, progress=False))
        ours_s = time.perf_counter() - t0
    ok = [r for r in rows if r["status"] == "ok"]
    plain_per_shape, plain_n = plain_loop_seconds(items[:args.plain_shapes], args.plain_epochs, device)
    ours_per_hour = 3600 * len(ok) / ours_s
    plain_per_hour = 3600 / plain_per_shape
    table = [{"loop": f"nis-fast fit-many, recipe {recipe}", "shapes": len(ok), "failed": len(rows) - len(ok),
              "seconds": ours_s, "shapes_per_hour": ours_per_hour, "vs_plain": ours_per_hour / plain_per_hour},
             {"loop": "plain PyTorch paper recipe (loop)", "shapes": plain_n, "failed": 0,
              "seconds": plain_per_shape * plain_n, "shapes_per_hour": plain_per_hour, "vs_plain": 1.0}]
    notes = [f"device {device}; folder {args.folder} ({len(items)} meshes)",
             f"plain loop: sampling as nis_fast does it (1e7 pool, 1e6 samples), then {args.plain_epochs} epochs of "
             f"plain PyTorch training scaled to 100, over the first {plain_n} meshes",
             "fit-many includes loading, hashing, sampling, training, writing .nis and the manifest (metrics off)"]
    report("bench_collection", ["loop", "shapes", "failed", "seconds", "shapes_per_hour", "vs_plain"], table,
           out=args.out, notes=notes, extra={"rows": rows, "config": config.to_dict()})


if __name__ == "__main__":
    main()
