"""Shared benchmark harness: warm-up + repeats with percentiles, a description of
the machine, and one table on stdout plus one JSON file per benchmark.

Every benchmark measures the tool a user would pick instead in the same run and
reports ratios, so numbers from different machines are never mixed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (REPO.parent / "shared", Path("/work/shared")) if (p / "meshes").is_dir()), REPO.parent / "shared")
RESULTS = REPO / "benchmarks" / "results"


def cuda_sync():
    """Synchronise torch's CUDA stream when there is one (a no-op on the CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(fn, *, warmup: int = 1, repeats: int = 5, sync=cuda_sync, min_time: float = 0.0) -> dict:
    """Run fn warmup times, then at least `repeats` times (and at least `min_time` s);
    return p20/p50/p80 and min of the per-call wall time in seconds."""
    for _ in range(warmup):
        fn()
    sync()
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    p20, p50, p80 = np.percentile(times, [20, 50, 80])
    return {"p20": float(p20), "p50": float(p50), "p80": float(p80), "min": float(min(times)), "n": len(times)}


def warm_up_fit(device) -> None:
    """On CUDA, one tiny fit of an analytic sphere first, so that the timed fits do not include the
    process's one-time costs (CUDA context, kernel loading and Triton compilation, cuRAND, graph pools)."""
    import torch

    import nis_fast as nf

    if torch.device(device).type != "cuda":
        return
    config = nf.FitConfig(pool_size=100_000, n_samples=20_000, epochs=2, batch_size=2048)
    nf.fit(lambda p: p.norm(dim=-1) - 0.5, config, device, progress=False)
    nf.fit_many([lambda p: p.norm(dim=-1) - 0.5] * 2, config, device, progress=False)


def machine() -> dict:
    """What ran the benchmark: CPU, threads, GPU (if any) and library versions."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import nis_fast

        info["nis_fast"] = nis_fast.backend_info()
    except Exception as exc:  # the benchmark may be run before the package builds
        info["nis_fast"] = f"unavailable: {exc}"
    return info


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke run)")
    p.add_argument("--out", help="JSON output path (default: benchmarks/results/<name>.json)")
    return p


def report(name: str, columns: list[str], rows: list[dict], *, out: str | None = None, notes: list[str] = (),
           extra: dict | None = None) -> Path:
    """Print rows as an aligned table and write {machine, columns, rows, notes} as JSON (atomically)."""
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print(f"\n## {name}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    for note in notes:
        print(f"note: {note}")
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"name": name, "machine": machine(), "columns": columns, "rows": rows,
                               "notes": list(notes), **(extra or {})}, indent=2, default=str))
    os.replace(tmp, path)
    print(f"(written to {path})")
    return path


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
