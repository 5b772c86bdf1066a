"""Rate and distortion: a weight-encoded shape against the compact meshes and distance grids a user would ship
instead, at equal bytes on disk.

For each mesh (default: every mesh in ../shared/meshes) one network is fitted (--recipe, default `fast`, then
quantization-aware epochs for its int8 file) and written as .nis in float32, float16 and int8: three points,
its bytes the file's size. The peers, each at every budget of --budgets (bytes):
- QEM raw: decimated by quadric error metrics (fast-simplification), float32 vertices + int32 faces;
- QEM + Draco: decimated to the most faces whose Draco encoding (DracoPy, 11- and 14-bit positions) fits;
- SDF grid: the exact signed distance on the largest grid over [-1, 1]^3 that fits, float16 (2 bytes a node) or
  8-bit (1 byte a node, one scale a grid: max |d| / 127), read back by marching cubes (what engines ship as mesh
  distance fields).
A peer never takes more than the mesh itself (a mesh smaller than a budget is its own point there).
Every surface is compared with the original in the unit frame: Chamfer-L1, Hausdorff and normal consistency from
--samples surface points a side (exact point-to-triangle distances, metrics.compare_surfaces). The networks and
the grids are also compared as distance fields (the SDF table): L1 against the exact distance on a 64^3 grid of
cell centres and at 100k near-surface importance samples, and the share of those samples with the right sign
(the grids read by trilinear interpolation). Writes the tables, JSON and a log-log plot per mesh plus the median
(--plot), and says at which budgets the network beats each peer.

    python benchmarks/bench_vs_qem.py [--meshes spot.obj ...] [--budgets 4000 8000 ...] [--plot out.png] [--quick]
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from bench_quantize import fit_on_samples, trained_further
from harness import SHARED, parser, report

import nis_fast as nf
from nis_fast.core.normalization import IDENTITY
from nis_fast.decode import marching_cubes
from nis_fast.mesh import Mesh
from nis_fast import metrics
from nis_fast.metrics import compare_surfaces, shape_mesh_unit

BUDGETS = [4_000, 8_000, 15_000, 30_000, 60_000]
DRACO_BITS = (11, 14)
NETWORK_DTYPES = ("float32", "float16", "int8")


def qem(mesh: Mesh, faces: int) -> Mesh:
    """The mesh decimated by QEM to about `faces` faces (the mesh itself when it has no more), unit frame."""
    import fast_simplification

    v, f = mesh.unit_vertices, mesh.faces
    if faces >= len(f):
        return Mesh(v, f, IDENTITY, "original")
    v2, f2 = fast_simplification.simplify(v.astype(np.float32), f, target_reduction=1.0 - faces / len(f))
    return Mesh(np.asarray(v2, np.float64), np.asarray(f2, np.int32), IDENTITY, "qem")


def raw_bytes(mesh: Mesh) -> int:
    return 12 * len(mesh.vertices) + 12 * len(mesh.faces)


def draco_bytes(mesh: Mesh, bits: int) -> int:
    import DracoPy

    return len(DracoPy.encode(mesh.vertices.astype(np.float32), mesh.faces, quantization_bits=bits,
                              compression_level=7))


def draco_decoded(mesh: Mesh, bits: int) -> Mesh:
    """What a reader gets back from the Draco file: positions rounded to the quantization grid."""
    import DracoPy

    back = DracoPy.decode(DracoPy.encode(mesh.vertices.astype(np.float32), mesh.faces, quantization_bits=bits,
                                         compression_level=7))
    return Mesh(np.asarray(back.points, np.float64), np.asarray(back.faces, np.int32), IDENTITY, "draco")


def largest_fitting(mesh: Mesh, budget: int, size_of) -> Mesh | None:
    """The QEM decimation with the most faces whose size_of(decimated) fits in budget (bisection on the
    face count), or None when not even a handful of faces fits."""
    if size_of(mesh) <= budget:
        return mesh
    lo, hi, best = 4, len(mesh.faces), None
    while hi - lo > max(4, lo // 50):  # to within 2 % of the face count
        mid = (lo + hi) // 2
        candidate = qem(mesh, mid)
        if size_of(candidate) <= budget:
            lo, best = mid, candidate
        else:
            hi = mid
    return best


GRID_FORMATS = {"float16": 2, "8-bit": 1}  # bytes a node


class GridSDF:
    """A distance grid over [-1, 1]^3 as the metrics read a shape: trilinear interpolation of its nodes."""

    device = torch.device("cpu")

    def __init__(self, values: np.ndarray):
        self.volume = torch.from_numpy(values.astype(np.float32))[None, None]  # [1, 1, x, y, z]

    def sdf(self, points, space="unit"):
        x = torch.as_tensor(points, dtype=torch.float32)
        # grid_sample's last coordinate indexes the volume's first axis
        at = x[:, [2, 1, 0]].reshape(1, -1, 1, 1, 3)
        return torch.nn.functional.grid_sample(self.volume, at, mode="bilinear", padding_mode="border",
                                               align_corners=True).reshape(-1)


def distance_grid(sdf: nf.MeshSDF, budget: int, fmt: str) -> tuple[np.ndarray, int] | None:
    """The node values of the largest grid of this format that fits in the budget, as a reader decodes them
    (float16, or 8-bit codes times one scale), and its bytes; None below 4 nodes a side."""
    per_node = GRID_FORMATS[fmt]
    resolution = int(round((budget / per_node) ** (1 / 3)))
    while resolution ** 3 * per_node > budget:
        resolution -= 1
    if resolution < 4:
        return None
    axis = np.linspace(-1.0, 1.0, resolution)
    nodes = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    exact = np.asarray(sdf.sdf(nodes), np.float32).reshape((resolution,) * 3)
    if fmt == "float16":
        return exact.astype(np.float16).astype(np.float32), resolution ** 3 * 2
    scale = float(np.abs(exact).max()) / 127  # stored beside the codes: 4 bytes, not counted
    return np.round(exact / scale).clip(-127, 127) * scale, resolution ** 3


def grid_surface(values: np.ndarray) -> Mesh | None:
    """Marching cubes of a grid's values; None where the shape is thinner than its cells (no surface)."""
    vertices, faces = marching_cubes(values, 0.0)
    if len(faces) == 0:
        return None
    unit = vertices.astype(np.float64) * (2.0 / (values.shape[0] - 1)) - 1.0
    return Mesh(unit, faces.astype(np.int32), IDENTITY, "grid")


def sdf_row(name, method, nbytes, shape, mesh, sdf) -> dict:
    """The distance-field comparison of a network or a grid with the exact distance (unit frame)."""
    return {"mesh": name, "method": method, "bytes": nbytes,
            "grid_l1": metrics.grid_l1(shape, mesh, resolution=64, sdf_fn=sdf.sdf),
            "near_l1": metrics.importance_l1(shape, mesh, sdf_fn=sdf.sdf),
            "sign_agreement": metrics.sign_agreement(shape, mesh, sdf_fn=sdf.sdf)}


def network_points(mesh: Mesh, config: nf.FitConfig, quantize_epochs: int, resolution: int, seed: int):
    """[(dtype, file bytes, surface in the unit frame)] of one fit stored each way; int8 from the same fit
    after quantization-aware epochs."""
    sdf = nf.MeshSDF(mesh, space="unit")
    points, targets, params = fit_on_samples(sdf.sdf, config, seed)
    aware = params[0]
    if quantize_epochs:
        aware = trained_further(params, points, targets, nf.FitConfig(**{
            **config.to_dict(), "epochs": 0, "quantize_epochs": quantize_epochs}), seed)
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for dtype in NETWORK_DTYPES:
            shape = nf.NeuralSDF(aware if dtype == "int8" else params[0], mesh.transform)
            path = os.path.join(folder, f"shape_{dtype}.nis")
            shape.save(path, dtype=dtype, compact=True)  # what a size-bound user ships (nis-fast compress)
            stored = nf.load(path)
            vertices, faces = shape_mesh_unit(stored, resolution)
            out.append((dtype, os.path.getsize(path), Mesh(vertices, faces, IDENTITY, "nis"), stored))
    return out, sdf


def plot(rows, path):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meshes = sorted({r["mesh"] for r in rows})
    # The network's three files make one curve; each peer one curve over the budgets.
    series = {r["method"] for r in rows if not r["method"].startswith("network")}
    series = [NETWORK] + sorted(series)
    cols = 4
    n_rows = (len(meshes) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.3 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, meshes + ["median over meshes"]):
        for method in series:
            mine = [r for r in rows if _series(r) == method]
            if name == "median over meshes":
                pts = _median_curve(mine)
            else:
                pts = sorted((r["bytes"], r["chamfer"]) for r in mine if r["mesh"] == name)
            pts = [(b, max(c, CHAMFER_FLOOR)) for b, c in pts]
            if pts:
                ax.plot(*zip(*pts), "o-" if method == NETWORK else ".-", label=method, lw=2 if method == NETWORK else 1,
                        ms=5 if method == NETWORK else 3, color="black" if method == NETWORK else None)
        ax.set(xscale="log", yscale="log", title=name, xlabel="bytes on disk", ylabel="Chamfer-L1 (unit frame)")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", lw=0.3)
    spare = list(axes.flat)[len(meshes) + 1:]
    for ax in spare:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    (spare[0] if spare else axes.flat[0]).legend(handles, labels, fontsize=8, loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


NETWORK = "network (int8, float16, float32 .nis)"
# Plotted no lower: a peer that keeps the whole mesh (it fits the budget) is exact to rounding.
CHAMFER_FLOOR = 1e-5


def _series(row) -> str:
    return NETWORK if row["method"].startswith("network") else row["method"]


def _median_curve(rows):
    """Median bytes and median Chamfer over the meshes at each point of a curve (a budget, or a network dtype)."""
    by_point = {}
    for r in rows:
        by_point.setdefault(r["method"] if r["method"].startswith("network") else r["budget"], []).append(
            (r["bytes"], r["chamfer"]))
    return sorted((float(np.median([b for b, _ in v])), float(np.median([c for _, c in v])))
                  for v in by_point.values() if len(v) >= 2)


def wins(rows) -> list[dict]:
    """Per mesh and peer: at each network point, the peer's Chamfer at that many bytes (log-log
    interpolation of its curve) over the network's; > 1: the network is closer to the mesh."""
    out = []
    for name in sorted({r["mesh"] for r in rows}):
        nets = [r for r in rows if r["mesh"] == name and r["method"].startswith("network")]
        for peer in sorted({r["method"] for r in rows if not r["method"].startswith("network")}):
            curve = sorted({(r["bytes"], r["chamfer"]) for r in rows if r["mesh"] == name and r["method"] == peer})
            if len(curve) < 2:
                continue
            b, c = np.log([p[0] for p in curve]), np.log([p[1] for p in curve])
            for net in sorted(nets, key=lambda r: r["bytes"]):
                if not b[0] <= np.log(net["bytes"]) <= b[-1]:
                    continue
                peer_chamfer = float(np.exp(np.interp(np.log(net["bytes"]), b, c)))
                out.append({"mesh": name, "network": net["method"], "bytes": net["bytes"], "peer": peer,
                            "peer/network chamfer": peer_chamfer / net["chamfer"]})
    return out


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--meshes", nargs="*", help="file names in ../shared/meshes (default: all of them)")
    p.add_argument("--budgets", nargs="*", type=int, default=BUDGETS)
    p.add_argument("--recipe", default="fast", choices=("paper", "fast", "quick"))
    p.add_argument("--quantize-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=256, help="marching cubes of the networks")
    p.add_argument("--samples", type=int, default=200_000, help="surface samples a side for Chamfer/Hausdorff")
    p.add_argument("--plot", help="write the rate-distortion plot (PNG) here")
    p.add_argument("--from-json", help="measure nothing: the table, wins and plot of an earlier run's JSON")
    args = p.parse_args()
    if args.from_json:
        import json

        with open(args.from_json) as f:
            rows = json.load(f)["rows"]
        report("bench_vs_qem_wins", ["mesh", "network", "bytes", "peer", "peer/network chamfer"], wins(rows),
               out=args.out)
        if args.plot:
            plot(rows, args.plot)
        return
    names = args.meshes or sorted(f for f in os.listdir(SHARED / "meshes") if f.endswith((".obj", ".stl", ".off", ".ply")))
    if args.quick:
        names, args.budgets, args.recipe, args.resolution, args.samples = names[:1], [8_000, 30_000], "quick", 128, 20_000
    torch.set_num_threads(1)
    config = getattr(nf.FitConfig, args.recipe)()
    rows, sdf_rows = [], []
    for name in names:
        mesh = nf.load_mesh(SHARED / "meshes" / name, warn=False)
        full = Mesh(mesh.unit_vertices, mesh.faces, IDENTITY, "original")
        points, sdf = network_points(mesh, config, args.quantize_epochs, args.resolution, args.seed)

        def add(method, budget, nbytes, surface):
            rows.append({"mesh": name, "faces": len(mesh.faces), "method": method, "budget": budget, "bytes": nbytes,
                         **compare_surfaces(mesh, surface, args.samples)})
            print(rows[-1], flush=True)

        for dtype, nbytes, surface, stored in points:
            add(f"network {dtype}", nbytes, nbytes, surface)
            sdf_rows.append(sdf_row(name, f"network {dtype}", nbytes, stored, mesh, sdf))
        for budget in args.budgets:
            decimated = largest_fitting(full, budget, raw_bytes)
            if decimated is not None:
                add("QEM raw (float32 + int32)", budget, raw_bytes(decimated), decimated)
            for bits in DRACO_BITS:
                decimated = largest_fitting(full, budget, lambda m: draco_bytes(m, bits))
                if decimated is not None:
                    add(f"QEM + Draco {bits}-bit", budget, draco_bytes(decimated, bits), draco_decoded(decimated, bits))
            for fmt in GRID_FORMATS:
                grid = distance_grid(sdf, budget, fmt)
                if grid is None:
                    continue
                sdf_rows.append(sdf_row(name, f"SDF grid {fmt}", grid[1], GridSDF(grid[0]), mesh, sdf))
                surface = grid_surface(grid[0])
                if surface is not None:
                    add(f"SDF grid {fmt}", budget, grid[1], surface)
    report("bench_vs_qem_sdf", ["mesh", "method", "bytes", "grid_l1", "near_l1", "sign_agreement"], sdf_rows,
           out=None if args.out is None else args.out.replace(".json", "_sdf.json"),
           notes=["distance fields against the exact distance, unit frame: L1 on a 64^3 grid of cell centres, L1 "
                  "and the share of right signs at 100k near-surface importance samples (beta 60)"])
    report("bench_vs_qem", ["mesh", "faces", "method", "budget", "bytes", "chamfer", "hausdorff",
                            "normal_consistency"], rows, out=args.out,
           notes=[f"network: recipe {args.recipe}, seed {args.seed}, int8 after {args.quantize_epochs} "
                  "quantization-aware epochs; bytes: the .nis file / the encoded mesh / the grid's values",
                  f"Chamfer-L1 and Hausdorff from {args.samples:,} surface samples a side, unit frame (radius 0.9)"])
    ratios = wins(rows)
    report("bench_vs_qem_wins", ["mesh", "network", "bytes", "peer", "peer/network chamfer"], ratios,
           out=None if args.out is None else args.out.replace(".json", "_wins.json"),
           notes=["> 1: the network is closer to the mesh than the peer at the network's bytes (the peer's "
                  "curve interpolated log-log); missing: the network's bytes are outside the peer's curve"])
    if args.plot:
        plot(rows, args.plot)
        print(f"(plot written to {args.plot})")


if __name__ == "__main__":
    main()
