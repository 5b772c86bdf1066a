"""Make the README's pictures: fit shared meshes with the `fast` recipe on the CPU and sphere-trace each fit,
next to the paper's released car network. Writes docs/images/*.png and prints fit times and accuracy.

    python docs/make_images.py [--recipe fast] [--size 320]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from harness import SHARED  # noqa: E402

import nis_fast as nf  # noqa: E402
from nis_fast.decode import Camera, save_png  # noqa: E402

MESHES = ["spot.obj", "armadillo.obj", "fandisk.obj", "thingi10k_32770.stl", "stanford-bunny.obj"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="fast", choices=("paper", "fast", "quick"))
    p.add_argument("--size", type=int, default=320)
    args = p.parse_args()
    out = HERE / "images"
    out.mkdir(exist_ok=True)
    camera = Camera.orbit(35.0, 20.0)
    tiles = []
    for name in MESHES:
        mesh = nf.load_mesh(SHARED / "meshes" / name, warn=False)
        t0 = time.perf_counter()
        shape = nf.fit(mesh, config=getattr(nf.FitConfig, args.recipe)(), device="cpu")
        seconds = time.perf_counter() - t0
        error = nf.metrics.surface_error(shape, mesh, n=20_000)
        image = shape.render(args.size, args.size, camera=camera)
        tiles.append(image)
        save_png(image, out / f"{Path(name).stem}.png")
        print(f"{name:24s} {len(mesh.faces):7d} faces  fit {seconds:5.1f} s  mean |f| on surface {error:.5f}")
    car = nf.load(SHARED / "paper_weights" / "car_1.h5")
    tiles.append(car.render(args.size, args.size, camera=camera))
    save_png(tiles[-1], out / "paper_car_1.png")
    save_png(np.concatenate(tiles, axis=1), out / "gallery.png")


if __name__ == "__main__":
    main()
