"""Files from strangers, fuzzed (hypothesis): mesh files of every format load_mesh reads, .nis and Keras .h5
weight files, random and mutated. Each must load or fail with the documented error (MeshError, NisFileError);
any other exception, a crash, a hang or a memory blow-up is a bug.

CI runs a bounded number of examples per test; NIS_FAST_FUZZ_EXAMPLES=N runs more. The .h5 cases run in a
child process, so that a crash inside the HDF5 library fails the test instead of killing the run.
"""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nis_fast as nf
from nis_fast.io import NisFileError
from nis_fast.mesh import MeshError
from tests.conftest import PAPER_WEIGHTS

EXAMPLES = int(os.environ.get("NIS_FAST_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MEMORY_BOUND = 4 << 30  # bytes of address space a case may add; past it, allocation fails instead of swapping


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """An address-space limit for this module's cases: a file that asks for a huge allocation must fail with
    the documented error, not take the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = _address_space()
    limit = used + MEMORY_BOUND
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _load_mesh_or_mesh_error(path):
    try:
        mesh = nf.load_mesh(path, warn=False)
    except MeshError:
        return None
    assert np.all(np.isfinite(mesh.vertices)) and mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    return mesh


# --- meshes -----------------------------------------------------------------------------------------------

number = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.integers(-10, 10), st.sampled_from(["1e400", "-0", "nan", "x", ""]))
index = st.one_of(st.integers(-5, 12), st.sampled_from(["0", "1/2", "1//3", "-1", "99999999999", "a"]))


@st.composite
def obj_text(draw):
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["v", "f", "vn", "vt", "o", "#", "garbage"]))
        if kind == "v":
            lines.append("v " + " ".join(str(draw(number)) for _ in range(draw(st.integers(0, 4)))))
        elif kind == "f":
            lines.append("f " + " ".join(str(draw(index)) for _ in range(draw(st.integers(0, 5)))))
        else:
            lines.append(kind + " " + draw(st.text(max_size=10)))
    return "\n".join(lines)


@st.composite
def ply_bytes(draw):
    n_v, n_f = draw(st.integers(-1, 6)), draw(st.sampled_from([0, 1, 2, 10**12, -3]))
    fmt = draw(st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian", "nonsense"]))
    header = (f"ply\nformat {fmt} 1.0\nelement vertex {n_v}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {n_f}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    return header + draw(st.binary(max_size=300))


@st.composite
def off_text(draw):
    counts = f"{draw(st.integers(-1, 5))} {draw(st.sampled_from([0, 1, 3, 10**12]))} 0"
    body = [" ".join(str(draw(number)) for _ in range(3)) for _ in range(draw(st.integers(0, 5)))]
    body += [" ".join(str(draw(index)) for _ in range(4)) for _ in range(draw(st.integers(0, 3)))]
    return "\n".join(["OFF", counts] + body)


@st.composite
def stl_bytes(draw):
    if draw(st.booleans()):
        facets = []
        for _ in range(draw(st.integers(0, 3))):
            verts = "\n".join("vertex " + " ".join(str(draw(number)) for _ in range(3)) for _ in range(3))
            facets.append(f"facet normal 0 0 1\nouter loop\n{verts}\nendloop\nendfacet")
        return ("solid x\n" + "\n".join(facets) + "\nendsolid x\n").encode()
    count = draw(st.sampled_from([0, 1, 2, 1 << 31]))
    return bytes(80) + count.to_bytes(4, "little") + draw(st.binary(max_size=200))


@st.composite
def glb_bytes(draw):
    length = draw(st.integers(0, 1 << 31))
    return b"glTF" + (2).to_bytes(4, "little") + length.to_bytes(4, "little") + draw(st.binary(max_size=200))


@FUZZ
@given(st.one_of(obj_text().map(lambda t: (".obj", t.encode("utf-8", "surrogatepass"))),
                 ply_bytes().map(lambda b: (".ply", b)), off_text().map(lambda t: (".off", t.encode())),
                 stl_bytes().map(lambda b: (".stl", b)), glb_bytes().map(lambda b: (".glb", b)),
                 st.tuples(st.sampled_from([".obj", ".ply", ".stl", ".off", ".glb"]), st.binary(max_size=500))))
def test_mesh_files_load_or_raise_mesh_error(tmp_path_factory, case):
    suffix, data = case
    path = tmp_path_factory.mktemp("fuzz") / ("m" + suffix)
    path.write_bytes(data)
    _load_mesh_or_mesh_error(path)


# --- weight files ------------------------------------------------------------------------------------------

def _mutations():
    """(edits, truncate): byte edits at relative positions, then an optional cut, also relative."""
    edit = st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255))
    return st.tuples(st.lists(edit, max_size=6), st.one_of(st.none(), st.floats(0, 1)))


def _mutate(data: bytes, mutation) -> bytes:
    edits, cut = mutation
    out = bytearray(data)
    for where, value in edits:
        out[int(where * len(out))] = value
    return bytes(out[:int(cut * len(out))] if cut is not None else out)


@pytest.fixture(scope="module")
def nis_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nis")
    shape = nf.NeuralSDF(np.random.default_rng(0).normal(0, 0.2, 7553).astype(np.float32))
    files = {}
    for dtype in ("float32", "float16", "int8"):
        shape.save(folder / f"{dtype}.nis", dtype=dtype)
        files[dtype] = (folder / f"{dtype}.nis").read_bytes()
    return files


@FUZZ
@given(dtype=st.sampled_from(["float32", "float16", "int8"]), mutation=_mutations())
def test_mutated_nis_files_load_or_raise_nis_file_error(tmp_path_factory, nis_files, dtype, mutation):
    data = _mutate(nis_files[dtype], mutation)
    path = tmp_path_factory.mktemp("fuzz") / "w.nis"
    path.write_bytes(data)
    try:
        shape = nf.load(path)
    except NisFileError:
        return
    assert np.all(np.isfinite(shape.params.numpy()))


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_as_nis_raise_nis_file_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "w.nis"
    path.write_bytes(data)
    with pytest.raises(NisFileError):
        nf.load(path)


H5 = PAPER_WEIGHTS / "thingi10k_32770_sf.h5"


@pytest.mark.skipif(os.environ.get("NIS_FAST_FUZZ_H5_CHILD") != "1", reason="runs in the child of test_h5_fuzz")
@FUZZ
@given(mutation=_mutations())
def test_mutated_h5_files_in_child(tmp_path_factory, mutation):
    path = tmp_path_factory.mktemp("fuzz") / "w.h5"
    path.write_bytes(_mutate(H5.read_bytes(), mutation))
    try:
        shape = nf.load(path)
    except NisFileError:
        return
    assert np.all(np.isfinite(shape.params.numpy()))


def test_mutated_h5_files_load_or_raise_nis_file_error():
    if not H5.exists():
        pytest.skip(f"{H5} not found")
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                            f"{__file__}::test_mutated_h5_files_in_child"],
                           env={**os.environ, "NIS_FAST_FUZZ_H5_CHILD": "1"}, capture_output=True, text=True,
                           timeout=600)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    assert "1 passed" in child.stdout
