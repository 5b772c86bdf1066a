"""The public class nis_fast.MeshSDF (nis_fast/mesh_sdf.py) around the mesh queries: points as numpy
arrays or torch tensors of any real dtype, byte order and strides, in and out in the same kind; one
point and empty sets; contiguous points read in place; clear errors for bad points and options;
space="unit"; the device (a clear error without a GPU); and the CLI file helper `sdf_file`. The
answers themselves are checked against their twins in tests/test_mesh_query.py; here they are
compared with the same query on plain float numpy arrays, or with the shared meshes' answers."""
from __future__ import annotations

import numpy as np
import pytest

import nis_fast as nf
from nis_fast.ops.native import cuda_available
from mesh_cases import MESH_DIR, MESH_FILES, oracle, shared_mesh, shared_sdf


@pytest.fixture(scope="module")
def tetra():
    V = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return nf.MeshSDF((V, F))


def test_leaf_size_beyond_a_packet_is_refused(tetra):
    with pytest.raises(ValueError, match="leaf_size"):
        nf.MeshSDF(tetra.mesh, leaf_size=5)


def test_unit_space_is_the_normalised_frame():
    name = "spot.obj" if "spot.obj" in MESH_FILES else pytest.skip("spot.obj not in the shared meshes")
    mesh = shared_mesh(name)
    p = oracle(name)[0]
    unit = nf.MeshSDF(mesh, space="unit")
    np.testing.assert_allclose(unit.sdf(mesh.transform.to_unit(p)), shared_sdf(name).sdf(p) * mesh.transform.scale,
                               rtol=1e-9, atol=1e-12)


def test_single_point_and_empty_sets(tetra):
    d = tetra.sdf(np.array([0.1, 0.1, 0.1]))
    assert d.shape == () and d < 0
    dist, point, face = tetra.closest([2.0, 0, 0])
    assert dist.shape == () and point.shape == (3,) and face.shape == () and dist == pytest.approx(1.0)
    for dtype in (np.float32, np.float64):
        empty = np.zeros((0, 3), dtype)
        assert tetra.sdf(empty).shape == (0,) and tetra.sdf(empty).dtype == dtype
        dist, point, face = tetra.closest(empty)
        assert point.shape == (0, 3) and face.shape == (0,) and face.dtype == np.int32
        assert tetra.winding(empty).shape == (0,) and tetra.contains(empty).shape == (0,)
        t, f = tetra.intersect(empty, empty)
        assert t.shape == (0,) and f.shape == (0,)


def test_bad_points_get_clear_errors(tetra):
    with pytest.raises(ValueError, match="NaN or infinite"):
        tetra.sdf(np.array([[0.0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        tetra.winding(np.array([[np.inf, 0, 0]]))
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        tetra.sdf(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        tetra.sdf(np.zeros((2, 3, 3)))
    with pytest.raises(TypeError, match="real numbers"):
        tetra.sdf(np.zeros((2, 3), dtype=np.complex128))
    with pytest.raises(TypeError, match="real numbers"):
        tetra.sdf(np.array([[0, 0, 0]], dtype=object))
    with pytest.raises(TypeError):
        tetra.sdf("points")
    with pytest.raises(ValueError, match="sign must be one of"):
        tetra.sdf(np.zeros((1, 3)), sign="parity")
    with pytest.raises(ValueError, match="zero vectors"):
        tetra.intersect(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="must match origins"):
        tetra.intersect(np.zeros((2, 3)), np.ones((1, 3)))


def test_integer_points_are_converted(tetra):
    d = tetra.sdf(np.array([[2, 0, 0]], dtype=np.int64))
    assert d.dtype == np.float64 and d[0] == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i4"])
def test_big_endian_points_are_the_same_numbers(tetra, dtype):
    p = np.random.default_rng(7).uniform(-1, 2, (20, 3)).astype(dtype)
    native_order = p.astype(p.dtype.newbyteorder("="))
    d = tetra.sdf(p)
    assert d.dtype == tetra.sdf(native_order).dtype
    np.testing.assert_array_equal(d, tetra.sdf(native_order))


def test_non_contiguous_input(tetra):
    p = np.random.default_rng(5).uniform(-1, 2, (50, 6))[:, ::2]
    np.testing.assert_array_equal(tetra.sdf(p), tetra.sdf(np.ascontiguousarray(p)))


def test_contiguous_points_reach_the_engine_uncopied(tetra, monkeypatch):
    """Points already contiguous in float32 or float64 (numpy, or torch on the CPU) are read in
    place: the native code gets the caller's own address. Others are converted once."""
    import nis_fast.ops.mesh_query as sdf_module

    addresses = []
    real_data_ptr = sdf_module.data_ptr
    monkeypatch.setattr(sdf_module, "data_ptr", lambda x: addresses.append(real_data_ptr(x)) or addresses[-1])
    p = np.random.default_rng(8).uniform(-1, 2, (64, 3))
    inputs = [p, p.astype(np.float32)]
    torch = pytest.importorskip("torch")
    inputs += [torch.from_numpy(p), torch.from_numpy(p.astype(np.float32))]
    for x in inputs:
        for query in (tetra.sdf, tetra.closest, tetra.winding):
            addresses.clear()
            query(x)
            assert addresses[0] == real_data_ptr(x), (type(x), x.dtype, query.__name__)
    addresses.clear()
    tetra.sdf(p[:, ::-1])  # reversed columns: a converted copy, not the caller's memory
    assert not p.ctypes.data <= addresses[0] < p.ctypes.data + p.nbytes


def test_torch_edge_inputs_answer_as_numpy(tetra):
    """Strided, integer, gradient-tracking and empty tensors answer as the same numpy arrays do,
    through every query; NaN tensors get the same one error at every entry point."""
    torch = pytest.importorskip("torch")
    p = torch.from_numpy(np.random.default_rng(9).uniform(-1, 2, (40, 6)))
    for x in (p[:, ::2], (p[:, :3] * 4).to(torch.int32), p[:, :3].clone().requires_grad_(), torch.zeros((0, 3))):
        ref = x.detach().numpy()
        np.testing.assert_array_equal(tetra.sdf(x).numpy(), tetra.sdf(ref))
        for ours, theirs in zip(tetra.closest(x), tetra.closest(ref)):
            np.testing.assert_array_equal(ours.numpy(), theirs)
        np.testing.assert_array_equal(tetra.winding(x).numpy(), tetra.winding(ref))
        np.testing.assert_array_equal(tetra.contains(x).numpy(), tetra.contains(ref))
        for ours, theirs in zip(tetra.intersect(x, x + 1), tetra.intersect(ref, ref + 1)):
            np.testing.assert_array_equal(ours.numpy(), theirs)
    nan = torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]])
    for query in (tetra.sdf, tetra.closest, tetra.winding, tetra.contains, lambda x: tetra.intersect(x, x + 1)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            query(nan)


def test_torch_in_torch_out(tetra):
    torch = pytest.importorskip("torch")
    p = torch.tensor(np.random.default_rng(6).uniform(-1, 2, (100, 3)))
    for dtype in (torch.float32, torch.float64):
        q = p.to(dtype)
        d = tetra.sdf(q)
        assert isinstance(d, torch.Tensor) and d.dtype == dtype and d.device == q.device
        np.testing.assert_allclose(d.numpy(), tetra.sdf(q.numpy()), rtol=0)
        dist, point, face = tetra.closest(q)
        assert point.dtype == dtype and face.dtype == torch.int32
        assert tetra.contains(q).dtype == torch.bool
    with pytest.raises(TypeError, match="real numbers"):
        tetra.sdf(torch.zeros(2, 3, dtype=torch.complex64))


def test_main_sdf_file_writes_atomically(tmp_path):
    name = "spot.obj" if "spot.obj" in MESH_FILES else pytest.skip("spot.obj not in the shared meshes")
    p = oracle(name)[0]
    np.save(tmp_path / "p.npy", p)
    out = tmp_path / "d.npy"
    from nis_fast.cli import sdf_file as main_sdf_file

    main_sdf_file(MESH_DIR / name, tmp_path / "p.npy", out, sign="winding")
    np.testing.assert_array_equal(np.load(out), shared_sdf(name).sdf(p))
    np.save(tmp_path / "bad.npy", np.full((2, 3), np.nan))
    with pytest.raises(ValueError):
        main_sdf_file(MESH_DIR / name, tmp_path / "bad.npy", tmp_path / "never.npy")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bad.npy", "d.npy", "p.npy"]


@pytest.mark.skipif(cuda_available(), reason="checks the error raised where there is no GPU")
def test_cuda_without_gpu_raises_a_clear_error(tetra):
    with pytest.raises(RuntimeError, match="CUDA|cuda"):
        nf.MeshSDF(tetra.mesh, device="cuda")
    p = np.zeros((4, 3))
    out = np.empty(4)
    with pytest.raises(RuntimeError, match="CUDA|cuda|upload_cuda"):
        tetra._bvh.closest("cuda", "float64", p.ctypes.data, 4, 1, 2.0, out.ctypes.data, 0, 0, 0, 0, 0)



def test_queries_from_several_threads_give_the_single_thread_answers():
    """One MeshSDF shared by Python threads (each query releases the GIL and runs its own OpenMP team)."""
    from concurrent.futures import ThreadPoolExecutor

    sdf = shared_sdf("spot.obj") if (MESH_DIR / "spot.obj").exists() else nf.MeshSDF(
        (np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]), np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])))
    sets = [np.random.default_rng(seed).uniform(-1.5, 1.5, (20_000, 3)) for seed in range(8)]
    alone = [(sdf.sdf(p), sdf.closest(p)[0], sdf.winding(p)) for p in sets]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda p: (sdf.sdf(p), sdf.closest(p)[0], sdf.winding(p)), sets * 2))
    for i, answers in enumerate(together):
        for got, expected in zip(answers, alone[i % len(sets)]):
            np.testing.assert_array_equal(got, expected)


BIG_MESH_SCRIPT = """
import json, resource, sys, numpy as np
import nis_fast as nf
n = 1582  # a torus of 2 n^2 = 5.0M triangles, made here (no file): radii 1 and 0.4
u, v = np.meshgrid(np.arange(n) * 2 * np.pi / n, np.arange(n) * 2 * np.pi / n, indexing="ij")
V = np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)], -1).reshape(-1, 3)
i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
a, b, c, d = i * n + j, (i + 1) % n * n + j, (i + 1) % n * n + (j + 1) % n, i * n + (j + 1) % n
F = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
del u, v, i, j, a, b, c, d
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
mesh = nf.load_mesh((V, F))
del V, F
sdf = nf.MeshSDF(mesh)
p = np.random.default_rng(0).uniform(-1.5, 1.5, (100_000, 3)).astype(np.float32)
d = sdf.sdf(p)
q = p.astype(np.float64)
exact = np.hypot(np.hypot(q[:, 0], q[:, 1]) - 1, q[:, 2]) - 0.4
json.dump({"faces": len(mesh.faces), "closed": sdf.closed, "baseline": baseline,
           "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "error": float(np.abs(d - exact).max())}, sys.stdout)
"""
BYTES_PER_FACE_BOUND = 1024  # peak memory of load_mesh + MeshSDF + float32 queries, above the process's baseline


def test_a_five_million_triangle_mesh_stays_within_its_memory_bound():
    import json
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", BIG_MESH_SCRIPT], capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    found = json.loads(child.stdout)
    assert found["faces"] == 2 * 1582**2 and found["closed"]
    assert found["error"] < 1e-4  # the mesh's chords are within ~1e-6 of the torus; float32 queries
    assert found["peak"] - found["baseline"] <= BYTES_PER_FACE_BOUND * found["faces"], found
