"""The CLI: every command runs end to end on small inputs, and backend_info is truthful."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import nis_fast as nf
from nis_fast.ops import native as _backend
from nis_fast.cli import build_parser, example_mesh_path, main
from tests.conftest import PAPER_WEIGHTS

TINY = ["--recipe", "quick", "--epochs", "1", "--pool-size", "20000", "--n-samples", "4096", "--device", "cpu"]


def test_backend_info_is_truthful():
    info = nf.backend_info()
    status = _backend.cuda_status()
    assert info["native"]["cuda_built"] == status["built"]
    assert info["cpu_threads"] >= 1
    assert "-fopenmp" in info["native"]["cxx_flags"]
    if not status["available"]:
        assert info["cuda"].startswith("not available (") and status["reason"] in info["cuda"]
    if status["built"]:
        assert "sm_" in info["native"]["cuda_archs"]
    else:
        assert info["native"]["cuda_not_built_because"]


def test_cuda_sources_were_compiled_when_nvcc_is_present():
    if not (shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")) or os.environ.get("NIS_FAST_CUDA") == "0":
        pytest.skip("no nvcc here: the build skips CUDA by design")
    assert nf.backend_info()["native"]["cuda_built"], "nvcc is present but the CUDA backend was not built"


def test_info_command_prints_backend_info_as_json():
    result = subprocess.run([sys.executable, "-m", "nis_fast.cli", "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["native"] == nf.backend_info()["native"]


def test_every_command_has_help(capsys):
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"info", "demo", "sdf", "fit", "fit-many", "convert", "render", "mesh", "eval", "export"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: nis-fast" in capsys.readouterr().out


def test_demo_fits_saves_and_renders(capsys, tmp_path):
    assert main(["demo", "-o", str(tmp_path), "--recipe", "quick", "--size", "64x48", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torus_knot.ply" in out and "7680 faces" in out
    assert nf.load(tmp_path / "shape.nis").params.shape == (7553,)
    assert Image.open(tmp_path / "shape.png").size == (64, 48)


def test_fit_info_convert_render_mesh_export_eval(capsys, tmp_path):
    nis, h5 = tmp_path / "knot.nis", tmp_path / "knot.h5"
    assert main(["fit", example_mesh_path(), "-o", str(nis), *TINY]) == 0
    assert main(["info", str(nis)]) == 0
    capsys.readouterr()
    assert main(["info", str(nis)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nis" and info["architecture"]
    assert main(["convert", str(nis), str(h5)]) == 0
    np.testing.assert_array_equal(nf.load(h5).params.numpy(), nf.load(nis).params.numpy())
    png = tmp_path / "knot.png"
    assert main(["render", str(h5), "-o", str(png), "--size", "40x30", "--shading", "normals"]) == 0
    assert Image.open(png).size == (40, 30)
    ply = tmp_path / "knot.ply"
    assert main(["mesh", str(nis), "-o", str(ply), "--resolution", "32"]) == 0
    import trimesh

    assert len(trimesh.load(ply).faces) > 0
    src = tmp_path / "knot.c"
    assert main(["export", str(nis), "--language", "c", "-o", str(src)]) == 0
    assert "nis_sdf" in src.read_text()
    capsys.readouterr()
    assert main(["eval", str(nis), example_mesh_path()]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))


def test_fit_many_writes_one_file_per_mesh(tmp_path):
    import trimesh

    paths = []
    for name, mesh in (("box", trimesh.creation.box()), ("ball", trimesh.creation.icosphere(2))):
        paths.append(tmp_path / f"{name}.ply")
        mesh.export(paths[-1])
    assert main(["fit-many", *map(str, paths), "-o", str(tmp_path / "out"), "--no-metrics", *TINY]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["ball.nis", "box.nis", "manifest.csv"]


def test_sdf_command_matches_the_python_api(tmp_path):
    points = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))
    np.save(tmp_path / "p.npy", points)
    assert main(["sdf", example_mesh_path(), str(tmp_path / "p.npy"), "-o", str(tmp_path / "d.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), nf.MeshSDF(example_mesh_path()).sdf(points))


def test_sdf_command_bad_points_files_are_one_clear_error(tmp_path, capsys):
    """Every points file that holds no (N, 3) array of numbers ends in one line (exit 2), and no
    output is written; a big-endian array is the same numbers and is answered."""
    points = np.random.default_rng(1).uniform(-1, 1, size=(50, 3))
    np.save(tmp_path / "big_endian.npy", points.astype(">f8"))
    assert main(["sdf", example_mesh_path(), str(tmp_path / "big_endian.npy"), "-o", str(tmp_path / "d.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), nf.MeshSDF(example_mesh_path()).sdf(points))
    np.savez(tmp_path / "archive.npz", points=points)
    (tmp_path / "text.npy").write_text("1 2 3\n")
    np.save(tmp_path / "flat.npy", points[:, :2])
    np.save(tmp_path / "words.npy", np.array([["a", "b", "c"]]))
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "objects.npy", np.array([[1, 2, None]], dtype=object), allow_pickle=True)
    cases = {"archive.npz": ".npz archive", "text.npy": "cannot be read", "empty.npy": "cannot be read",
             "objects.npy": "cannot be read", "flat.npy": "shape", "words.npy": "real numbers",
             "missing.npy": "missing.npy"}
    for name, message in cases.items():
        out = tmp_path / f"out_{name}.npy"
        assert main(["sdf", example_mesh_path(), str(tmp_path / name), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
        assert not out.exists()


def test_paper_weights_render(tmp_path):
    src = PAPER_WEIGHTS / "car_1.h5"
    if not src.exists():
        pytest.skip(f"{src} not found")
    assert main(["render", str(src), "-o", str(tmp_path / "car.png"), "--size", "32x32"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["demo", "--mesh", "/no/such/mesh.obj"], "no such file"),
    (["render", "/no/such/shape.nis", "-o", "x.png"], "shape.nis"),
    (["info", __file__], "unknown extension"),
])
def test_bad_input_is_one_clear_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_size_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["render", "a.nis", "-o", "a.png", "--size", "big"])
    assert "1920x1080" in capsys.readouterr().err


def test_fit_checks_the_output_before_fitting(capsys, tmp_path):
    assert main(["fit", example_mesh_path(), "-o", str(tmp_path / "x.h5"), "--fp16", *TINY]) == 2
    assert "float32 weights only" in capsys.readouterr().err
    assert main(["fit", example_mesh_path(), "-o", str(tmp_path / "x.obj"), *TINY]) == 2
    assert "unknown extension" in capsys.readouterr().err


def test_fit_many_refuses_outputs_that_would_collide(capsys, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(example_mesh_path(), tmp_path / sub / "m.ply")
    assert main(["fit-many", str(tmp_path / "a" / "m.ply"), str(tmp_path / "b" / "m.ply"),
                 "-o", str(tmp_path / "out"), *TINY]) == 2
    assert "overwrite" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_unwritable_output_and_missing_gpu_are_one_line(capsys, tmp_path):
    nis = tmp_path / "k.nis"
    assert main(["fit", example_mesh_path(), "-o", str(nis), *TINY]) == 0
    assert main(["render", str(nis), "-o", str(tmp_path), "--size", "8x8"]) == 2  # a folder, not a file
    if not _backend.cuda_available():
        assert main(["render", str(nis), "-o", str(tmp_path / "a.png"), "--device", "cuda"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_int8_files_from_fit_and_convert(capsys, tmp_path):
    """fit --dtype int8 fits quantization-aware and writes int8 weights; convert --dtype int8 rounds a file."""
    q = tmp_path / "q.nis"
    assert main(["fit", example_mesh_path(), "-o", str(q), "--dtype", "int8", "--quantize-epochs", "1", *TINY]) == 0
    info = nf.io.describe(q)
    assert info["dtype"] == "int8" and info["recipe"]["quantize_epochs"] == 1
    assert main(["convert", str(q), str(tmp_path / "f.nis")]) == 0  # back to float32: the same weights
    assert torch.equal(nf.load(tmp_path / "f.nis").params, nf.load(q).params)
    assert main(["convert", str(tmp_path / "f.nis"), str(tmp_path / "q2.nis"), "--dtype", "int8"]) == 0
    assert torch.equal(nf.load(tmp_path / "q2.nis").params, nf.load(q).params)  # on the grid already: unchanged
    assert main(["convert", str(q), str(tmp_path / "q.h5"), "--dtype", "int8"]) == 2  # Keras files hold float32
    assert "float32 weights only" in capsys.readouterr().err


def test_compress_picks_the_most_precise_dtype_that_fits(tmp_path, capsys):
    from nis_fast import io
    from nis_fast.cli import compress_dtype

    bounds = {d: io.nis_size_bound(d) for d in io.DTYPES}
    assert bounds["float32"] > bounds["float16"] > bounds["int8"]
    assert compress_dtype(bounds["float32"]) == "float32" and compress_dtype(bounds["float32"] - 1) == "float16"
    assert compress_dtype(bounds["int8"]) == "int8"
    with pytest.raises(ValueError, match="smallest"):
        compress_dtype(bounds["int8"] - 1)
    out = tmp_path / "c.nis"
    assert main(["compress", example_mesh_path(), "--bytes", "12000", "-o", str(out), *TINY]) == 0
    assert os.path.getsize(out) <= bounds["int8"] <= 12000
    shape = nf.load(out)
    assert shape.metadata["dtype"] == "int8" and "recipe" not in shape.metadata
    assert main(["compress", example_mesh_path(), "--bytes", "5000", "-o", str(tmp_path / "d.nis"), *TINY]) == 2
    assert "smallest" in capsys.readouterr().err and not (tmp_path / "d.nis").exists()


def test_size_bound_holds_for_any_transform(tmp_path):
    from nis_fast import io
    from nis_fast.core.normalization import Normalization

    rng = np.random.default_rng(0)
    for dtype in io.DTYPES:
        for scale in (1e-300, 3.3e-7, 1.0, 123456.789, 1e300):
            center = rng.normal(size=3) * scale
            shape = nf.NeuralSDF(rng.normal(0, 0.2, 7553).astype(np.float32), Normalization(center, 1 / scale))
            shape.save(tmp_path / "s.nis", dtype=dtype, compact=True)
            assert os.path.getsize(tmp_path / "s.nis") <= io.nis_size_bound(dtype)
