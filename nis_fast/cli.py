"""`nis-fast`: the command line. Each subcommand is a small function below;
`--help` on any of them says what it does."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources

import numpy as np

from . import collection, io, metrics
from .core.files import atomic_write
from .decode import save_png
from .export import export
from .fit import FitConfig, default_device, fit, training_backend
from .mesh import MESH_SUFFIXES, load_mesh
from .mesh_sdf import MeshSDF
from .model import load
from .ops.native import backend_info


def example_mesh_path() -> str:
    """The mesh shipped with the package (a torus-knot tube generated for nis_fast)."""
    return str(resources.files("nis_fast") / "data" / "torus_knot.ply")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, got {text!r}") from None
    if not (0 < w <= 16384 and 0 < h <= 16384):
        raise argparse.ArgumentTypeError(f"size {w}x{h} out of range (1..16384 per side)")
    return w, h


# Quantization-aware epochs a fit for an int8 file gets unless --quantize-epochs says otherwise.
INT8_QUANTIZE_EPOCHS = 5


def _weights_dtype(args) -> str:
    """The dtype of the written weights: --dtype, else float16 with --fp16, else float32."""
    return args.dtype or ("float16" if args.fp16 else "float32")


def _config(args):
    """FitConfig from --recipe plus any explicit overrides; a fit for an int8 file is quantization-aware."""
    config = getattr(FitConfig, args.recipe)()
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "n_samples", "pool_size", "lr", "quantize_epochs")
                 if getattr(args, k) is not None}
    if args.fp16:
        overrides["precision"] = "float16"
    if _weights_dtype(args) == "int8":
        overrides.setdefault("quantize_epochs", INT8_QUANTIZE_EPOCHS)
    return FitConfig(**{**config.to_dict(), **overrides})


def _load_points(path) -> np.ndarray:
    """The array of a .npy file, or one clear error for a file that holds none."""
    try:
        points = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:  # no .npy header, truncated, empty, or object arrays
        raise ValueError(f"points file '{path}': cannot be read as a numeric .npy array ({exc})") from exc
    if not isinstance(points, np.ndarray):  # an .npz archive opens as a mapping of arrays
        points.close()
        raise ValueError(f"points file '{path}': an .npz archive; save one (N, 3) array with np.save")
    if points.dtype.kind not in "fiu":
        raise ValueError(f"points file '{path}': holds {points.dtype} values; points must be real numbers")
    return points


def sdf_file(mesh_path, points_npy, out_npy, sign: str = "winding") -> None:
    """Signed distances of the points in `points_npy` ((N, 3) .npy) to the mesh, written
    atomically to `out_npy` (float of the input precision). The CLI's `nis-fast sdf`."""
    points = _load_points(points_npy)
    float64 = not (points.dtype.kind == "f" and points.dtype.itemsize <= 4)  # integers run in float64 too
    dist = MeshSDF(mesh_path, float64=float64).sdf(points, sign=sign)

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a bare path
            np.save(f, dist, allow_pickle=False)

    atomic_write(out_npy, write)


def cmd_info(args) -> int:
    _print_json(io.describe(args.file) if args.file else backend_info())
    return 0


def cmd_sdf(args) -> int:
    sdf_file(args.mesh, args.points, args.out, sign=args.sign)
    print(f"wrote {args.out}")
    return 0


def cmd_fit(args) -> int:
    dtype = _weights_dtype(args)
    io.check_target(args.out, dtype)  # before the fit, not after it
    t0 = time.perf_counter()
    shape = fit(args.mesh, config=_config(args), device=args.device, seed=args.seed)
    shape.save(args.out, dtype=dtype)
    print(f"fitted {args.mesh} in {time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0


def compress_dtype(budget: int) -> str:
    """The most precise weight dtype whose .nis file (compact) fits in `budget` bytes; ValueError if none does."""
    for dtype in io.DTYPES:  # float32, float16, int8: most precise first
        if io.nis_size_bound(dtype) <= budget:
            return dtype
    raise ValueError(f"--bytes {budget}: the smallest .nis file is {io.nis_size_bound(io.DTYPES[-1])} bytes "
                     f"(int8 weights)")


def cmd_compress(args) -> int:
    if args.dtype or args.fp16:
        raise ValueError("compress picks the weights' dtype from --bytes; leave out --dtype and --fp16")
    args.dtype = compress_dtype(args.bytes)
    io.check_target(args.out, args.dtype)
    if not args.out.lower().endswith(".nis"):
        raise ValueError(f"{args.out}: compress writes .nis files")
    shape = fit(args.mesh, config=_config(args), device=args.device, seed=args.seed)
    shape.save(args.out, dtype=args.dtype, compact=True)
    print(f"{args.mesh} -> {args.out}: {args.dtype} weights, {os.path.getsize(args.out)} bytes "
          f"(budget {args.bytes})")
    return 0


def cmd_fit_many(args) -> int:
    """Exit status 0 when every input is fitted (or up to date), 1 when any failed (each one line on
    stderr), 2 for usage errors (main)."""
    if args.summary:
        if args.inputs or args.out:
            raise ValueError("--summary OUT takes no inputs and no -o")
        _print_json(collection.summary(args.summary))
        return 0
    if not args.inputs or not args.out:
        raise ValueError("fit-many needs inputs (mesh files, folders or @list.txt) and -o OUT")
    t0 = time.perf_counter()
    rows = list(collection.fit_collection(args.inputs, args.out, _config(args), dtype=_weights_dtype(args),
                                          device=args.device, seed=args.seed, evaluate=not args.no_metrics,
                                          stack=args.stack, progress=False if args.quiet else None,
                                          ray=args.ray))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    if not args.quiet:
        print(f"fit-many: {len(rows)} inputs in {time.perf_counter() - t0:.1f} s: {counts['ok']} fitted, "
              f"{counts['skipped']} up to date, {counts['failed']} failed; manifest "
              f"{os.path.join(args.out, collection.MANIFEST)}")
    return 1 if counts["failed"] else 0


def cmd_convert(args) -> int:
    io.check_target(args.dst, _weights_dtype(args))
    io.convert(args.src, args.dst, dtype=_weights_dtype(args))
    print(f"wrote {args.dst}")
    return 0


def cmd_render(args) -> int:
    shape = load(args.shape)
    width, height = args.size
    t0 = time.perf_counter()
    image = shape.render(width, height, shading=args.shading, device=args.device)
    save_png(image, args.out)
    print(f"rendered {width}x{height} in {(time.perf_counter() - t0) * 1e3:.0f} ms -> {args.out}")
    return 0


def cmd_mesh(args) -> int:
    shape = load(args.shape)
    t0 = time.perf_counter()
    mesh = shape.to_mesh(resolution=args.resolution, device=args.device)
    ext = os.path.splitext(args.out)[1].lstrip(".") or "ply"
    atomic_write(args.out, lambda tmp: mesh.export(tmp, file_type=ext))
    print(f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces at {args.resolution}^3 in "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms -> {args.out}")
    return 0


def cmd_eval(args) -> int:
    _print_json(metrics.evaluate(load(args.shape), load_mesh(args.mesh)))
    return 0


def cmd_export(args) -> int:
    source = export(load(args.shape), args.language)
    if args.out:
        def write(tmp):
            with open(tmp, "w") as f:
                f.write(source)

        atomic_write(args.out, write)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(source)
    return 0


def cmd_demo(args) -> int:
    """Fit the bundled mesh (fast recipe: ~10 s on a 2-core CPU), save the .nis, render a PNG."""
    path = args.mesh or example_mesh_path()
    os.makedirs(args.out, exist_ok=True)
    mesh = load_mesh(path)
    print(f"mesh      {mesh.name}: {mesh.report['vertices']} vertices, {mesh.report['faces']} faces, "
          f"watertight={mesh.report['watertight']}")
    config = getattr(FitConfig, args.recipe)()
    print(f"fit       recipe '{args.recipe}': {config.n_samples:,} samples from a {config.pool_size:,}-point pool, "
          f"{config.epochs} epochs, on {training_backend(args.device or default_device(), config.trainer)}")
    t0 = time.perf_counter()
    shape = fit(mesh, config=config, device=args.device, seed=0)
    t_fit = time.perf_counter() - t0
    nis_path = os.path.join(args.out, "shape.nis")
    shape.save(nis_path)
    print(f"          {t_fit:.1f} s -> {nis_path} ({os.path.getsize(nis_path):,} bytes)")
    err = metrics.surface_error(shape, mesh, n=20_000)
    print(f"accuracy  mean |f| at 20k surface points: {err:.5f} (unit frame; the paper reports ~1e-3)")
    t0 = time.perf_counter()
    image = shape.render(args.size[0], args.size[1], device=args.device)
    png = os.path.join(args.out, "shape.png")
    save_png(image, png)
    print(f"render    {args.size[0]}x{args.size[1]} in {(time.perf_counter() - t0) * 1e3:.0f} ms -> {png}")
    return 0


def _fit_options(p) -> None:
    p.add_argument("--recipe", choices=("paper", "fast", "quick"), default="paper",
                   help="paper: Davies et al.'s recipe (default); fast: fewer samples and epochs, "
                        "as accurate on the benchmark meshes; quick: a rough demo fit")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--n-samples", type=int, help="importance samples drawn from the pool")
    p.add_argument("--pool-size", type=int, help="uniform points whose exact SDF is computed")
    p.add_argument("--lr", type=float)
    p.add_argument("--fp16", action="store_true", help="float16 matmuls in training (CUDA) and a float16 .nis")
    p.add_argument("--dtype", choices=io.DTYPES, help="the written weights (.nis; .h5: float32): int8 is under a "
                   f"third of float32 and makes the fit quantization-aware ({INT8_QUANTIZE_EPOCHS} more epochs, then "
                   "the biases alone)")
    p.add_argument("--quantize-epochs", type=int, help="quantization-aware epochs after the schedule")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nis-fast", description="Weight-encoded neural implicit shapes "
                                     "(Davies et al. 2020): mesh -> 7553-parameter SDF network -> distances, "
                                     "meshes, images.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text, description=None):
        p = sub.add_parser(name, help=help_text, description=description or help_text)
        p.set_defaults(func=func)
        return p

    p = command("info", cmd_info, "what was built and runs here; or what a .nis/.h5 file holds",
                "Without a file: what was built into the native module and what can run on this machine "
                "(CPU threads, CUDA, Triton). With a file: its validated contents.")
    p.add_argument("file", nargs="?", help="a .nis or Keras .h5 weight file")

    p = command("demo", cmd_demo, "fit the bundled example mesh, save the .nis and render it",
                "Fit the bundled torus-knot mesh (or --mesh) with the fast recipe (about 10 s on a 2-core CPU), "
                "write shape.nis and shape.png.")
    p.add_argument("--mesh", help="use this mesh instead of the bundled example")
    p.add_argument("-o", "--out", default="nis_demo", help="output folder (default: ./nis_demo)")
    p.add_argument("--recipe", choices=("paper", "fast", "quick"), default="fast")
    p.add_argument("--size", type=_size, default=(512, 512), help="image size, e.g. 512x512")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    p = command("sdf", cmd_sdf, "exact signed distances from a mesh to points",
                "Signed distances (negative inside) of the (N, 3) points in a .npy file to a mesh, as a .npy.")
    p.add_argument("mesh")
    p.add_argument("points", help=".npy file holding an (N, 3) float array")
    p.add_argument("-o", "--out", required=True, help="output .npy")
    p.add_argument("--sign", choices=("winding", "pseudonormal"), default="winding",
                   help="winding: generalised winding number (robust, default); pseudonormal: faster, right only "
                        "on embedded closed meshes (MeshSDF.pseudonormal_exact)")

    p = command("fit", cmd_fit, "fit one mesh and write a .nis (or Keras .h5)")
    p.add_argument("mesh")
    p.add_argument("-o", "--out", required=True, help="output .nis or .h5")
    _fit_options(p)

    p = command("compress", cmd_compress, "fit a mesh into a .nis of at most --bytes bytes",
                "Fit the mesh and write the most precise weights that fit the budget: float32 (~31 kB), float16 "
                "(~16 kB) or int8 with a quantization-aware fit (~9 kB), without optional metadata. A budget "
                "below the int8 file is an error.")
    p.add_argument("mesh")
    p.add_argument("--bytes", type=int, required=True, help="the largest file size allowed")
    p.add_argument("-o", "--out", required=True, help="output .nis")
    _fit_options(p)

    p = command("fit-many", cmd_fit_many, "fit a collection: mesh files, folders, @lists; resumable, with a manifest",
                "Fit every mesh named by the inputs (files; folders, searched recursively for "
                f"{', '.join(MESH_SUFFIXES)}; @list.txt, one input a line) into OUT/<relative path>.nis, writing "
                "OUT/manifest.csv as it goes. Run again, it skips inputs whose output is up to date (same source "
                "file, same recipe). An input that fails is recorded and the run goes on. Exit status: 0 all "
                "fitted, 1 some failed, 2 usage error. On a GPU, shapes train in stacks (--stack).")
    p.add_argument("inputs", nargs="*", help="mesh files, folders or @list.txt")
    p.add_argument("-o", "--out", help="output folder")
    p.add_argument("--summary", metavar="OUT", help="print the totals of OUT/manifest.csv and exit")
    p.add_argument("--stack", type=int, help="shapes trained together on a GPU (default 8 on CUDA, 1 on a CPU)")
    p.add_argument("--ray", metavar="ADDRESS", help="fit the stacks as tasks of a Ray cluster ('local' starts one "
                   "here; 'auto' or host:port joins one): GPU-aware, outputs and manifest written here "
                   "(pip install 'nis_fast[ray]')")
    p.add_argument("--no-metrics", action="store_true", help="leave the manifest's accuracy columns empty "
                   "(they cost about a quarter of a fast fit per shape on a CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no closing line (failures still go "
                   "to stderr)")
    _fit_options(p)

    p = command("convert", cmd_convert, "convert between .nis and the paper's Keras .h5")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--fp16", action="store_true", help="store float16 weights (.nis only; as --dtype float16)")
    p.add_argument("--dtype", choices=io.DTYPES, help="the weights of dst (.nis: any; .h5: float32); int8 rounds "
                   "a float network without fine-tuning (fit with --dtype int8 for a quantization-aware fit)")

    p = command("render", cmd_render, "sphere-trace a shape to a PNG")
    p.add_argument("shape", help=".nis or .h5")
    p.add_argument("-o", "--out", required=True, help="output .png")
    p.add_argument("--size", type=_size, default=(512, 512), help="image size, e.g. 1920x1080")
    p.add_argument("--shading", choices=("lambert", "normals", "depth"), default="lambert")
    p.add_argument("--device", help="cpu or cuda (default: where the shape lives)")

    p = command("mesh", cmd_mesh, "extract a triangle mesh by marching cubes")
    p.add_argument("shape", help=".nis or .h5")
    p.add_argument("-o", "--out", required=True, help="output mesh (.ply, .obj, .stl, .off, .glb)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--device", help="cpu or cuda")

    p = command("eval", cmd_eval, "accuracy of a shape against its mesh (the paper's metrics)")
    p.add_argument("shape", help=".nis or .h5")
    p.add_argument("mesh")

    p = command("export", cmd_export, "self-contained decoder source (C, GLSL or HLSL) with the weights baked in")
    p.add_argument("shape", help=".nis or .h5")
    p.add_argument("--language", choices=("c", "glsl", "hlsl"), default="c")
    p.add_argument("-o", "--out", help="output file (default: stdout)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # Bad input (MeshError, NisFileError and other ValueErrors), files that cannot be written, and
    # "needs a CUDA device" all end in one line; anything else is a bug and keeps its traceback.
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"nis-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
