"""Fitting many shapes: nis_fast.fit_many (on CUDA one training of the stacked networks) against the
loop a user would write (nis_fast.fit shape after shape), shapes per second, in one run.

The shapes are the shared meshes with released weights (thingi10k 32770, 37825, 70375), repeated with
other seeds up to --shapes. Sampling (exact SDF of each shape's pool, then the importance draw) and
training are timed apart. On a CPU fit_many is that same loop, so only the loop is timed there.

    python benchmarks/bench_fit_many.py [--recipe fast] [--shapes 8] [--quick]
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SHARED, cuda_sync, parser, report, warm_up_fit  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast.fit import FitConfig, default_device  # noqa: E402

RECIPES = {"paper": FitConfig.paper, "fast": FitConfig.fast, "quick": FitConfig.quick}
MESHES = ["thingi10k_32770.stl", "thingi10k_37825.stl", "thingi10k_70375.stl"]


def timed(fn):
    cuda_sync()
    t0 = time.perf_counter()
    out = fn()
    cuda_sync()
    return out, time.perf_counter() - t0


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default=None, help="default: fast (quick with --quick)")
    ap.add_argument("--shapes", type=int, default=None, help="how many shapes (default 8; 2 with --quick)")
    args = ap.parse_args()
    recipe = args.recipe or ("quick" if args.quick else "fast")
    config = RECIPES[recipe]()
    count = args.shapes or (2 if args.quick else 8)
    found = [SHARED / "meshes" / m for m in MESHES if (SHARED / "meshes" / m).exists()]
    if not found:
        print(f"bench_fit_many: none of {MESHES} under {SHARED / 'meshes'}")
        return
    meshes = [nf.load_mesh(found[i % len(found)], warn=False) for i in range(count)]
    device = default_device()
    warm_up_fit(device)
    methods = [("fit loop", lambda: [nf.fit(m, config, device, seed=i, progress=False) for i, m in enumerate(meshes)])]
    if device.type == "cuda":
        methods.append(("fit_many", lambda: nf.fit_many(meshes, config, device, progress=False)))
    rows = []
    for name, run in methods:
        shapes, seconds = timed(run)
        parts = [s.metadata["recipe"]["seconds"] for s in shapes]
        rows.append({"method": name, "device": str(device), "recipe": recipe, "shapes": count, "total_s": seconds,
                     "sampling_s": sum(p["sampling"] for p in parts), "training_s": sum(p["training"] for p in parts),
                     "shapes_per_s": count / seconds,
                     "mean_final_loss": sum(s.metadata["recipe"]["final_loss"] for s in shapes) / count})
        print(rows[-1], flush=True)
    if len(rows) == 2:
        rows[1]["x_fit_loop"] = rows[0]["total_s"] / rows[1]["total_s"]
    notes = [f"recipe {recipe}: {config.to_dict()}",
             "sampling_s and training_s are sums over the shapes (fit_many: each shape's share of the stacked training)",
             "on CUDA after one warm-up fit (the process's one-time costs are in neither method)",
             "target (issue 6, H100): >= 10 shapes/s fitting many at once"]
    if device.type != "cuda":
        notes.append("no CUDA device: fit_many is the fit loop here, so only the loop is timed")
    report("bench_fit_many", ["method", "device", "recipe", "shapes", "total_s", "sampling_s", "training_s",
                              "shapes_per_s", "x_fit_loop", "mean_final_loss"], rows, out=args.out, notes=notes)


if __name__ == "__main__":
    main()
