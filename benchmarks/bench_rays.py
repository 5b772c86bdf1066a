"""Ray-mesh intersection: nis_fast.MeshSDF.intersect against Open3D's RaycastingScene.cast_rays (Embree).

Same meshes as bench_sdf (armadillo ~100k triangles, spot, a 65k-triangle torus, in the normalised frame),
same rays, same thread count, one run. Two ray sets: "scattered" (origins uniform in [-1, 1]^3, random
directions: secondary rays, metrics) and "camera" (a 512 x 512 pinhole view from outside: primary rays,
coherent). Before a tool's speed is quoted its first hits are checked against brute force
(tests/reference.py._mesh_intersect, the same watertight test) on a sample: hit/miss disagreements and
the largest t difference.

    python benchmarks/bench_rays.py [--quick] [--threads 2] [--out results.json]
    python benchmarks/bench_rays.py --device cuda --threads 16   (on a GPU machine: the CUDA engine too)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

THREADS = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--threads=")), 2)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the plain twins: tests/reference.py
from bench_sdf import load_meshes, open3d_scene  # noqa: E402
from harness import parser, report, timeit  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast.core.normalization import IDENTITY  # noqa: E402
from nis_fast.mesh import Mesh  # noqa: E402
from reference import _mesh_intersect  # noqa: E402


def ray_sets(n, side, seed=0):
    """(origins, directions) float32: scattered rays, and a pinhole camera's side x side rays from (0, 0.4, 2.6)."""
    rng = np.random.default_rng(seed)
    scattered = (rng.uniform(-1, 1, (n, 3)), rng.normal(size=(n, 3)))
    u, v = np.meshgrid(np.linspace(-0.45, 0.45, side), np.linspace(0.45, -0.45, side))
    eye = np.array([0.0, 0.4, 2.6])
    directions = np.stack([u, v - 0.15, -np.ones_like(u)], -1).reshape(-1, 3)
    camera = (np.broadcast_to(eye, directions.shape), directions)
    return {name: tuple(np.ascontiguousarray(a, dtype=np.float32) for a in rays)
            for name, rays in (("scattered", scattered), ("camera", camera))}


def tools(threads, device):
    """(name, build(V, F) -> state, prepare(o, d) -> the rays in the tool's own form (not timed),
    cast(state, rays) -> (t, hit mask))."""
    def ours_build(V, F):
        return nf.MeshSDF(Mesh(V, F, IDENTITY), device=device)

    def ours_prepare(o, d):
        if device == "cuda":
            import torch

            return torch.from_numpy(o).cuda(), torch.from_numpy(d).cuda()
        return o, d

    def ours_cast(sdf, rays):
        t, face = sdf.intersect(*rays)
        return t, face >= 0

    out = [(f"nis_fast intersect ({device})", ours_build, ours_prepare, ours_cast)]
    if device != "cpu":
        return out
    try:
        import open3d as o3d

        def o3d_build(V, F):
            return open3d_scene(V, F, threads)

        def o3d_prepare(o, d):
            return o3d.core.Tensor(np.concatenate([o, d], 1))

        def o3d_cast(scene, rays):
            t = scene.cast_rays(rays, nthreads=threads)["t_hit"].numpy()
            return t, np.isfinite(t)

        out.append(("open3d cast_rays (Embree)", o3d_build, o3d_prepare, o3d_cast))
    except ImportError:
        print("open3d not installed: skipped", file=sys.stderr)
    return out


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args, _ = ap.parse_known_args()
    nf.ops.native.native.set_cpu_threads(args.threads)
    n, side = (20_000, 128) if args.quick else (200_000, 512)
    rows = []
    for mesh in load_meshes(args.quick):
        V, F = np.ascontiguousarray(mesh.unit_vertices), mesh.faces
        label = f"{Path(mesh.name.strip(chr(39))).name} ({len(F)} tris)"
        sets = ray_sets(n, side)
        baseline, mesh_rows = {}, []
        for set_name, (o, d) in sets.items():
            sample = np.random.default_rng(1).choice(len(o), 100, replace=False)
            ref_t, ref_face = _mesh_intersect(V, F, o[sample], d[sample])
            for name, build, prepare, cast in tools(args.threads, "cpu") + (
                    tools(args.threads, "cuda") if args.device == "cuda" else []):
                state, rays = build(V, F), prepare(o, d)
                t, hit = (np.asarray(x.cpu() if hasattr(x, "cpu") else x) for x in cast(state, rays))
                both = hit[sample] & (ref_face >= 0)
                seconds = timeit(lambda: cast(state, rays), warmup=1, repeats=3, min_time=0.5)["p50"]
                rate = len(o) / seconds
                if name.startswith("open3d"):
                    baseline[set_name] = rate
                mesh_rows.append({"mesh": label, "rays": set_name, "tool": name, "n": len(o),
                                  "Mrays_per_s": rate / 1e6, "hit_pct": 100 * float(hit.mean()),
                                  "hit_disagree_vs_bruteforce": int(np.sum(hit[sample] != (ref_face >= 0))),
                                  "max_t_diff": float(np.abs(t[sample][both] - ref_t[both]).max()) if both.any() else 0.0})
        for r in mesh_rows:
            if r["rays"] in baseline:
                r["x_open3d"] = r["Mrays_per_s"] * 1e6 / baseline[r["rays"]]
        rows += mesh_rows
    columns = ["mesh", "rays", "tool", "n", "Mrays_per_s", "x_open3d", "hit_pct", "hit_disagree_vs_bruteforce",
               "max_t_diff"]
    notes = [f"{args.threads} CPU threads for every CPU tool; float32 rays in the normalised frame",
             "hit_disagree_vs_bruteforce / max_t_diff: on 100 rays of each set against the float64 brute force "
             "(float32 rays grazing an edge may go either way)"]
    report("bench_rays", columns, rows, out=args.out, notes=notes)


if __name__ == "__main__":
    main()
