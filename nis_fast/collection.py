"""Fitting a collection: mesh files, folders and lists of them, one .nis each, resumable, with failures
isolated and a manifest.

- Inputs: a mesh file, a folder (searched recursively for MESH_SUFFIXES) or `@list.txt` (one input a line,
  relative to the list's folder; blank lines and `#` comments skipped). A file's output is
  OUT/<its name>.nis, a folder's files keep their path below the folder: OUT/<relative path>.nis.
- The manifest OUT/manifest.csv has one row per input (COLUMNS) and is rewritten atomically after each one.
- Resuming: an input whose output exists and records the same source file hash and recipe is not fitted
  again (status "skipped"). Outputs are written atomically; the temp files of a killed run are removed at
  the next start, so a run killed at any moment and started again ends with each input done once.
- Failures are isolated: an input that cannot be read, hashed, fitted or written gets status "failed" and
  its reason, and the run goes on.
"""
from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import os
import sys
import tempfile
from dataclasses import dataclass

from . import io, metrics
from .core.files import atomic_write
from .fit import FitConfig, default_device, fit, fit_many
from .mesh import MESH_SUFFIXES, load_mesh
from .model import load

MANIFEST = "manifest.csv"
COLUMNS = ("path", "status", "reason", "output", "faces", "sampling_s", "training_s", "bytes", "surface_error",
           "grid_l1", "importance_l1", "chamfer", "source_sha256", "recipe")
METRICS = ("surface_error", "grid_l1", "importance_l1", "chamfer")


@dataclass(frozen=True)
class Input:
    source: str  # the file to read
    name: str  # its path relative to the input it was found under: the manifest's key, the output's path


def find_inputs(inputs) -> list[Input]:
    """The mesh files named by `inputs` (files, folders, @lists), in a stable order; ValueError for an input
    that does not exist or two inputs that would write the same output."""
    found = []
    for given in inputs:
        given = os.fspath(given)
        if given.startswith("@"):
            found += _listed(given[1:])
        elif os.path.isdir(given):
            for folder, subfolders, files in os.walk(given):
                subfolders.sort()
                for f in sorted(files):
                    if f.lower().endswith(MESH_SUFFIXES):
                        path = os.path.join(folder, f)
                        found.append(Input(path, os.path.relpath(path, given)))
        elif os.path.isfile(given):
            found.append(Input(given, os.path.basename(given)))
        else:
            raise ValueError(f"fit-many: input '{given}' is not a file, a folder or an @list")
    by_output = {}
    for item in found:
        by_output.setdefault(output_name(item), []).append(item.source)
    clashes = {out: sources for out, sources in by_output.items() if len(sources) > 1}
    if clashes:
        out, sources = next(iter(clashes.items()))
        raise ValueError(f"fit-many: inputs would overwrite each other's output ({len(clashes)} outputs), e.g. "
                         f"{out} from " + ", ".join(sources))
    return found


def _listed(list_file) -> list[Input]:
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"fit-many: cannot read the list '{list_file}' ({exc})") from exc
    base = os.path.dirname(os.path.abspath(list_file))
    entries = [line for line in lines if line and not line.startswith("#")]
    return find_inputs(entry if os.path.isabs(entry) or entry.startswith("@") else os.path.join(base, entry)
                       for entry in entries)


def output_name(item: Input) -> str:
    """OUT-relative path of an input's .nis: its name with the mesh suffix replaced."""
    return os.path.splitext(item.name)[0] + ".nis"


def recipe_id(config: FitConfig, seed: int, dtype: str) -> str:
    """A short hash of everything that decides an output's weights (threads do not: fits are the same at any
    thread count)."""
    recipe = {**config.to_dict(), "threads": None, "seed": seed, "dtype": dtype}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


class Manifest:
    """OUT/manifest.csv as a dict path -> row (strings), rewritten atomically on every update."""

    def __init__(self, out: str):
        self.path = os.path.join(out, MANIFEST)
        self.rows = {row["path"]: row for row in read_manifest(self.path)} if os.path.exists(self.path) else {}

    def update(self, row: dict) -> None:
        self.rows[row["path"]] = {c: _cell(row.get(c)) for c in COLUMNS}
        text = _io.StringIO()
        writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows[path] for path in sorted(self.rows))
        atomic_write(self.path, lambda tmp: _write_bytes(tmp, text.getvalue().encode("utf-8")))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_manifest(path) -> list[dict]:
    """The rows of a manifest.csv; ValueError when the file is not one."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"'{path}' is not a nis_fast manifest (columns {reader.fieldnames})")
        return list(reader)


def summary(out: str) -> dict:
    """Totals of OUT/manifest.csv: inputs by status, seconds, bytes, and the median of each metric."""
    rows = read_manifest(os.path.join(out, MANIFEST))
    by_status = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}

    def numbers(column):
        return sorted(float(r[column]) for r in rows if r[column])

    totals = {"inputs": len(rows), **by_status,
              "sampling_s": sum(numbers("sampling_s")), "training_s": sum(numbers("training_s")),
              "bytes": int(sum(numbers("bytes")))}
    for column in METRICS:
        values = numbers(column)
        totals[f"median_{column}"] = values[len(values) // 2] if values else None
    return totals


def _remove_stale_temp_files(out: str) -> None:
    """atomic_write's temp files (".<name>.<random>.tmp") that a killed run left in OUT."""
    for folder, _, files in os.walk(out):
        for f in files:
            if f.startswith(".") and f.endswith(".tmp"):
                os.remove(os.path.join(folder, f))


def _up_to_date(target: str, source_hash: str, recipe: str) -> bool:
    """Whether the .nis at target was written from this source file with this recipe (and reads back)."""
    try:
        metadata = load(target).metadata
    except (ValueError, OSError):  # an unreadable output is fitted again
        return False
    return (metadata.get("source", {}).get("file_sha256") == source_hash
            and metadata.get("recipe", {}).get("id") == recipe)


def fit_collection(inputs, out, config: FitConfig | None = None, *, dtype: str = "float32", device=None, seed: int = 0,
                   evaluate: bool = True, stack: int | None = None, progress=None, ray: str | None = None):
    """Fit every mesh that `inputs` name into OUT, yielding each input's manifest row (a dict of COLUMNS)
    as it finishes. Every input is fitted with `seed` (adding or removing inputs changes no other output).

    stack: shapes trained together through `fit_many` (default 8 on CUDA, 1 elsewhere); evaluate: the
    paper's three metrics and Chamfer in the manifest (unit frame); progress: a tqdm bar on stderr (None:
    when stderr is a terminal); ray: the address of a Ray cluster ("local" starts one here) that fits the
    stacks, one task each, GPU-aware; this process reads the inputs and writes every output and the manifest."""
    config = config or FitConfig()
    items = find_inputs(inputs)
    io.check_target(os.path.join(out, "x.nis"), dtype)
    runner = _RayStacks(ray, device) if ray else _LocalStacks(default_device() if device is None else device)
    os.makedirs(out, exist_ok=True)
    _remove_stale_temp_files(out)
    manifest = Manifest(out)
    recipe = recipe_id(config, seed, dtype)
    stack = stack or (8 if runner.device.startswith("cuda") else 1)
    settings = (config.to_dict(), dtype, runner.device, seed, evaluate)
    bar = _bar(len(items), progress)
    failed = 0

    def finish(rows):
        nonlocal failed
        for r in rows:
            manifest.update(r)
            failed += r["status"] == "failed"
            if r["status"] == "failed":
                print(f"nis-fast fit-many: {r['path']}: {r['reason']}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=failed)
        return [manifest.rows[r["path"]] for r in rows]

    jobs = []
    for i, item in enumerate(items):
        target = os.path.join(out, output_name(item))
        row = {"path": item.name, "output": output_name(item), "recipe": recipe}
        try:
            with open(item.source, "rb") as f:
                data = f.read()
            row["source_sha256"] = hashlib.sha256(data).hexdigest()
            if _up_to_date(target, row["source_sha256"], recipe):
                previous = manifest.rows.get(item.name)
                if previous and previous["status"] in ("ok", "skipped") and previous["recipe"] == recipe:
                    yield from finish([{**previous, "status": "skipped", "reason": "up to date"}])
                else:  # written, but the run was killed before its manifest row: the row from the file
                    yield from finish([_row(row, load(target), target, evaluate, lambda: load_mesh(item.source))])
                del data
            else:
                jobs.append(Job(item.source, data, row))
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop a collection
            yield from finish([_failed(row, exc)])
        if len(jobs) == stack or (jobs and i == len(items) - 1):
            runner.submit(jobs, settings)
            jobs = []
        for results in runner.finished(wait=i == len(items) - 1):
            yield from finish(_write(out, results))
    if bar is not None:
        bar.close()


@dataclass(frozen=True)
class Job:
    """One input of a stack, as the process that fits it gets it: the file's bytes, not its path (a Ray
    worker may be another machine)."""
    source: str  # the input's path, for messages and its format (the suffix)
    data: bytes
    row: dict  # its manifest row so far: path, output, recipe, source_sha256


def fit_stack(jobs: list[Job], config: dict, dtype: str, device: str, seed: int, evaluate: bool) -> list[tuple]:
    """Fit a stack of meshes (together through fit_many when there are several, one at a time if that fails,
    so that one bad shape fails alone): per job, its manifest row and its .nis file's bytes (None when it
    failed). Runs in this process or as a Ray task."""
    config = FitConfig(**config)
    results = [None] * len(jobs)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = []
        for k, job in enumerate(jobs):
            path = os.path.join(tmp, f"{k}{os.path.splitext(job.source)[1].lower()}")
            _write_bytes(path, job.data)
            try:
                loaded.append((k, load_mesh(path, name=f"'{job.source}'", warn=False)))
            except Exception as exc:  # noqa: BLE001
                results[k] = (_failed(job.row, exc), None)
        shapes = None
        if len(loaded) > 1:
            try:
                shapes = fit_many([m for _, m in loaded], config, device=device, seed=[seed] * len(loaded),
                                  progress=False)
            except Exception:  # noqa: BLE001 - refit one by one below, to isolate the failing shape
                shapes = None
        for i, (k, mesh) in enumerate(loaded):
            try:
                shape = shapes[i] if shapes else fit(mesh, config, device=device, seed=seed, progress=False)
                shape.metadata["source"]["file_sha256"] = jobs[k].row["source_sha256"]  # what resuming compares
                shape.metadata["recipe"]["id"] = jobs[k].row["recipe"]
                target = os.path.join(tmp, f"{k}.nis")
                shape.save(target, dtype=dtype)
                row = _row(jobs[k].row, shape, target, evaluate, lambda: mesh)
                with open(target, "rb") as f:
                    results[k] = (row, f.read())
            except Exception as exc:  # noqa: BLE001
                results[k] = (_failed(jobs[k].row, exc), None)
    return results


def _write(out: str, results: list[tuple]) -> list[dict]:
    """Each fitted job's .nis written atomically into OUT; the rows (failed where the write failed)."""
    rows = []
    for row, data in results:
        if data is not None:
            target = os.path.join(out, row["output"])
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                atomic_write(target, lambda tmp, data=data: _write_bytes(tmp, data))
            except OSError as exc:
                row = _failed(row, exc)
        rows.append(row)
    return rows


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


class _LocalStacks:
    """Stacks fitted here, one after another, as they are submitted."""

    def __init__(self, device):
        self.device, self.done = str(device), []

    def submit(self, jobs, settings):
        self.done.append(fit_stack(jobs, *settings))

    def finished(self, wait: bool):
        done, self.done = self.done, []
        return done


class _RayStacks:
    """Stacks fitted by Ray tasks (one a stack; a GPU each where the cluster has GPUs), collected as they end.
    At most two stacks a worker slot are in flight: their meshes' bytes wait in Ray's object store."""

    def __init__(self, address: str, device):
        try:
            import ray
        except ImportError as exc:
            raise ValueError("fit-many --ray needs Ray: pip install 'nis_fast[ray]'") from exc
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=None if address == "local" else address, log_to_driver=False,
                     include_dashboard=False)
        resources = ray.cluster_resources()
        self.device = str(device) if device is not None else ("cuda" if resources.get("GPU", 0) else "cpu")
        on_gpu = self.device.startswith("cuda")
        self.task = ray.remote(num_gpus=1 if on_gpu else 0)(fit_stack)
        self.limit = 2 * max(1, int(resources.get("GPU" if on_gpu else "CPU", 1)))
        self.running, self.done = {}, []  # Ray object ref -> the stack's jobs; results not yet handed out

    def submit(self, jobs, settings):
        while len(self.running) >= self.limit:
            self._collect(self.ray.wait(list(self.running), num_returns=1)[0])
        self.running[self.task.remote(jobs, *settings)] = jobs

    def finished(self, wait: bool):
        self._collect(list(self.running) if wait else
                      self.ray.wait(list(self.running), num_returns=len(self.running), timeout=0)[0])
        done, self.done = self.done, []
        return done

    def _collect(self, refs):
        for ref in refs:
            jobs = self.running.pop(ref)
            try:
                self.done.append(self.ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a worker that died fails its stack, not the run
                self.done.append([(_failed(job.row, exc), None) for job in jobs])


def _failed(row: dict, exc: BaseException) -> dict:
    reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return {**row, "status": "failed", "reason": reason}


def _row(row: dict, shape, target: str, evaluate: bool, mesh) -> dict:
    """An ok manifest row for the shape written at target; mesh() gives the source mesh for the metrics."""
    seconds = shape.metadata.get("recipe", {}).get("seconds", {})
    row = {**row, "status": "ok", "reason": "", "faces": shape.metadata.get("source", {}).get("faces"),
           "sampling_s": seconds.get("sampling"), "training_s": seconds.get("training"),
           "bytes": os.path.getsize(target)}
    if evaluate:
        found = metrics.evaluate(load(target), mesh())  # the file as written (int8 rounding included)
        row.update({k: found[k] for k in METRICS})
    return row


def _bar(total, progress):
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit-many", unit="shape", file=sys.stderr)


