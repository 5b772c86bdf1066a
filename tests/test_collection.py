"""Fitting collections (nis_fast.collection, `nis-fast fit-many`): folder trees and lists, the manifest,
resuming, isolated failures, exit codes, and a run killed with SIGKILL and started again."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import trimesh

import nis_fast as nf
from nis_fast import collection
from nis_fast.cli import main
from nis_fast.fit import FitConfig

TINY = FitConfig(pool_size=5000, n_samples=2000, epochs=1, batch_size=1000, lr=2e-3, schedule="cosine")
TINY_CLI = ["--recipe", "quick", "--epochs", "1", "--pool-size", "5000", "--n-samples", "2000", "--device", "cpu"]


def make_tree(root):
    """meshes in a folder tree (three formats, one nested two deep), a broken and an empty mesh, a non-mesh."""
    (root / "a" / "b").mkdir(parents=True)
    trimesh.creation.box().export(root / "box.ply")
    trimesh.creation.icosphere(1).export(root / "a" / "ball.obj")
    trimesh.creation.cylinder(0.5, 1.0, sections=12).export(root / "a" / "b" / "can.stl")
    (root / "a" / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    (root / "empty.off").write_bytes(b"")
    (root / "notes.txt").write_text("not a mesh")
    return {"box.ply", "a/ball.obj", "a/b/can.stl", "a/broken.obj", "empty.off"}


def manifest(out):
    with open(out / collection.MANIFEST, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def run(inputs, out, **kw):
    return list(nf.fit_collection(inputs, out, TINY, device="cpu", evaluate=False, progress=False, **kw))


def test_a_folder_tree_is_mirrored_and_failures_are_isolated(tmp_path, capsys):
    names = make_tree(tmp_path / "in")
    rows = run([tmp_path / "in"], tmp_path / "out")
    assert {r["path"] for r in rows} == names
    status = {r["path"]: r["status"] for r in rows}
    assert status == {"box.ply": "ok", "a/ball.obj": "ok", "a/b/can.stl": "ok", "a/broken.obj": "failed",
                      "empty.off": "failed"}
    for name in ("box.nis", "a/ball.nis", "a/b/can.nis"):
        shape = nf.load(tmp_path / "out" / name)
        assert shape.metadata["recipe"]["id"] == collection.recipe_id(TINY, 0, "float32")
    assert not (tmp_path / "out" / "a" / "broken.nis").exists()
    rows_on_disk = manifest(tmp_path / "out")
    assert set(rows_on_disk) == names and tuple(next(iter(rows_on_disk.values()))) == collection.COLUMNS
    assert "MeshError" in rows_on_disk["a/broken.obj"]["reason"] and "a/broken.obj" in rows_on_disk["a/broken.obj"]["reason"]
    ok = rows_on_disk["box.ply"]
    assert int(ok["faces"]) == 12 and int(ok["bytes"]) == os.path.getsize(tmp_path / "out" / "box.nis")
    assert float(ok["training_s"]) > 0 and len(ok["source_sha256"]) == 64
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if "fit-many:" in line]) == 2  # one line per failure


def test_a_second_run_fits_only_what_changed(tmp_path, monkeypatch):
    make_tree(tmp_path / "in")
    run([tmp_path / "in"], tmp_path / "out")
    before = {p: os.path.getmtime(tmp_path / "out" / p) for p in ("box.nis", "a/ball.nis")}
    trimesh.creation.box(extents=(1, 2, 3)).export(tmp_path / "in" / "box.ply")  # a changed source
    fitted = []
    real_fit = collection.fit
    monkeypatch.setattr(collection, "fit", lambda mesh, *a, **k: fitted.append(mesh.name) or real_fit(mesh, *a, **k))
    rows = {r["path"]: r for r in run([tmp_path / "in"], tmp_path / "out")}
    assert fitted == ["'" + str(tmp_path / "in" / "box.ply") + "'"]
    assert rows["box.ply"]["status"] == "ok" and rows["a/ball.obj"]["status"] == "skipped"
    assert rows["a/b/can.stl"]["status"] == "skipped" and rows["a/broken.obj"]["status"] == "failed"
    assert os.path.getmtime(tmp_path / "out" / "a/ball.nis") == before["a/ball.nis"]
    assert rows["a/ball.obj"]["training_s"]  # the skipped row keeps what the first run measured
    # another recipe (here: the dtype written) is a different output: everything is fitted again
    fitted.clear()
    rows = run([tmp_path / "in"], tmp_path / "out", dtype="float16")
    assert len(fitted) == 3 and all(r["status"] in ("ok", "failed") for r in rows)


def test_lists_files_and_name_clashes(tmp_path):
    make_tree(tmp_path / "in")
    (tmp_path / "list.txt").write_text("# a list\nin/box.ply\n\nin/a\n")
    rows = run(["@" + str(tmp_path / "list.txt")], tmp_path / "out")
    assert sorted(r["path"] for r in rows) == ["b/can.stl", "ball.obj", "box.ply", "broken.obj"]
    with pytest.raises(ValueError, match="overwrite"):
        collection.find_inputs([tmp_path / "in" / "box.ply", tmp_path / "in"])
    with pytest.raises(ValueError, match="not a file"):
        collection.find_inputs([tmp_path / "missing"])


def test_manifest_metrics_and_summary(tmp_path, capsys):
    trimesh.creation.icosphere(2).export(tmp_path / "ball.ply")
    (tmp_path / "bad.stl").write_bytes(b"solid x\nfacet garbage\n")
    assert main(["fit-many", str(tmp_path / "ball.ply"), str(tmp_path / "bad.stl"), "-o", str(tmp_path / "out"),
                 "--quiet", *TINY_CLI]) == 1
    row = manifest(tmp_path / "out")["ball.ply"]
    assert 0 < float(row["surface_error"]) < 0.2 and 0 < float(row["chamfer"]) < 10  # a one-epoch fit: rough
    capsys.readouterr()
    assert main(["fit-many", "--summary", str(tmp_path / "out")]) == 0
    totals = __import__("json").loads(capsys.readouterr().out)
    assert totals["inputs"] == 2 and totals["ok"] == 1 and totals["failed"] == 1
    assert totals["median_surface_error"] == float(row["surface_error"])
    assert main(["fit-many", "-o", str(tmp_path / "out")]) == 2  # no inputs: a usage error
    assert main(["fit-many", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")]) == 2


def test_stale_temp_files_are_removed(tmp_path):
    trimesh.creation.box().export(tmp_path / "box.ply")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".box.nis.abc123.tmp").write_bytes(b"half a file")
    run([tmp_path / "box.ply"], tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["box.nis", "manifest.csv"]


def test_a_killed_run_started_again_does_each_input_once(tmp_path):
    """SIGKILL while the run is under way (after its first output), then the same command again."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        trimesh.creation.icosphere(1, radius=0.5 + 0.1 * i).export(folder / f"s{i}.ply")
    cmd = [sys.executable, "-m", "nis_fast.cli", "fit-many", str(folder), "-o", str(tmp_path / "out"), "--quiet",
           "--no-metrics", *TINY_CLI]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "out" / "s1.nis").exists():
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    rows = manifest(tmp_path / "out")
    assert sorted(rows) == [f"s{i}.ply" for i in range(6)]
    assert all(r["status"] in ("ok", "skipped") for r in rows.values())
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out")
                   for d, _, fs in os.walk(tmp_path / "out") for f in fs)
    assert files == ["manifest.csv"] + [f"s{i}.nis" for i in range(6)]
    for i in range(6):
        nf.load(tmp_path / "out" / f"s{i}.nis")


def test_a_local_ray_cluster_writes_the_same_outputs(tmp_path):
    """--ray local: the stacks run as Ray tasks (other processes), this process writes outputs and manifest;
    the weights are the same bits as a run without Ray (fits do not depend on the thread count)."""
    ray = pytest.importorskip("ray")
    make_tree(tmp_path / "in")
    here = {r["path"]: r for r in run([tmp_path / "in"], tmp_path / "here")}
    try:
        there = {r["path"]: r for r in run([tmp_path / "in"], tmp_path / "ray", ray="local", stack=2)}
    finally:
        ray.shutdown()
    assert {k: r["status"] for k, r in there.items()} == {k: r["status"] for k, r in here.items()}
    assert "MeshError" in there["a/broken.obj"]["reason"]
    for name in ("box.nis", "a/ball.nis", "a/b/can.nis"):
        assert torch.equal(nf.load(tmp_path / "ray" / name).params, nf.load(tmp_path / "here" / name).params)
    assert set(manifest(tmp_path / "ray")) == set(here)
