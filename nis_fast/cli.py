"""`nis-fast`: the command line. Each subcommand is a small function below;
`--help` on any of them says what it does."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources


def example_mesh_path() -> str:
    """The mesh shipped with the package (a torus-knot tube generated for nis_fast)."""
    return str(resources.files("nis_fast") / "data" / "torus_knot.ply")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_info(args) -> int:
    import nis_fast as nf

    _print_json(nf.backend_info())
    return 0


def cmd_demo(args) -> int:
    import nis_fast as nf

    path = args.mesh or example_mesh_path()
    t0 = time.perf_counter()
    mesh = nf.load_mesh(path)
    t_load = time.perf_counter() - t0
    print(f"mesh       {mesh.name}: {mesh.report['vertices']} vertices, {mesh.report['faces']} faces "
          f"(loaded, validated and normalised in {t_load * 1e3:.0f} ms)")
    print(f"defects    {json.dumps({k: v for k, v in mesh.report.items() if k not in ('vertices', 'faces')})}")
    c, s = mesh.transform.center, mesh.transform.scale
    print(f"transform  unit = (world - [{c[0]:.4g}, {c[1]:.4g}, {c[2]:.4g}]) * {s:.6g}  "
          f"(smallest enclosing sphere -> radius 0.9 at the origin)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nis-fast", description=__doc__.split("\n")[0] + " Weight-encoded neural "
                                     "implicit shapes (Davies et al. 2020): mesh -> 7553-parameter SDF network.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="what was built and what runs here (CPU threads, CUDA, Triton)",
                       description="Print what was built into the native module and what can run on this machine.")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="run the main job on the bundled example mesh",
                       description="Load, validate and normalise the bundled torus-knot mesh (or --mesh) and report.")
    p.add_argument("--mesh", help="use this mesh instead of the bundled example")
    p.add_argument("-o", "--out", default="nis_demo", help="output folder (default: ./nis_demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .mesh import MeshError

    try:
        return args.func(args)
    except (MeshError, FileNotFoundError, ValueError) as exc:
        print(f"nis-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
