"""Mesh input: every shared mesh loads, broken input gets the documented error or
warning, and the normalisation is the exact smallest enclosing sphere."""
import itertools
import warnings

import numpy as np
import pytest
import trimesh

import nis_fast as nf
from nis_fast.core.normalization import Normalization, smallest_enclosing_sphere
from nis_fast.mesh import MeshWarning
from reference import _mesh_defects
from tests.conftest import MESH_FILES, mesh_path

# What each shared mesh is, after welding coincident vertices (../shared/meshes/SOURCES.md, "merged" column).
EXPECTED = {
    "armadillo.obj": dict(watertight=True),
    "beast.obj": dict(watertight=False, non_manifold_edges=2, duplicate_faces=2),
    "camelhead.off": dict(watertight=False, boundary_edges=56),
    "fandisk.obj": dict(watertight=True),
    "spot.obj": dict(watertight=True),
    "stanford-bunny.obj": dict(watertight=False, boundary_edges=223),
    "teapot.obj": dict(watertight=False, boundary_edges=160),
    "thingi10k_138201.stl": dict(watertight=False, non_manifold_edges=336),
    "thingi10k_32770.stl": dict(watertight=True),
    "thingi10k_37825.stl": dict(watertight=False, non_manifold_edges=1),
    "thingi10k_70375.stl": dict(watertight=True),
    "two-boxes-bad-self-union.ply": dict(watertight=True),
}


def test_every_shared_mesh_is_listed():
    assert sorted(EXPECTED) == MESH_FILES or not MESH_FILES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_meshes_load_with_the_documented_report(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mesh = nf.load_mesh(mesh_path(name))
    for key, value in EXPECTED[name].items():
        assert mesh.report[key] == value, (name, key, mesh.report)
    # A warning exactly when something is off.
    warned = [w for w in caught if issubclass(w.category, MeshWarning)]
    assert bool(warned) == (not mesh.report["watertight"] or mesh.report["duplicate_faces"] > 0)
    # Paper normalisation: bounding sphere radius 0.9, so everything is inside the unit cube.
    radius = np.linalg.norm(mesh.unit_vertices, axis=1).max()
    assert abs(radius - 0.9) < 1e-9
    assert np.abs(mesh.unit_vertices).max() <= 0.9 + 1e-9
    np.testing.assert_allclose(mesh.transform.to_world(mesh.unit_vertices), mesh.vertices,
                               atol=1e-12 * np.abs(mesh.vertices).max())


def brute_force_enclosing_sphere(points):
    """Smallest sphere over all 2-, 3- and 4-point circumspheres that enclose every point."""
    best = (None, np.inf)
    for k in (2, 3, 4):
        for subset in itertools.combinations(range(len(points)), k):
            s = points[list(subset)]
            a = s[1:] - s[0]
            center = s[0] + np.linalg.lstsq(a @ a.T, 0.5 * np.sum(a * a, axis=1), rcond=None)[0] @ a
            radii = np.linalg.norm(s - center, axis=1)
            if np.ptp(radii) > 1e-9 * radii.max():
                continue  # no sphere passes through all of them
            r = radii.max()
            if r < best[1] and np.all(np.linalg.norm(points - center, axis=1) <= r * (1 + 1e-9)):
                best = (center, r)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_smallest_enclosing_sphere_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    kind = seed % 3
    points = rng.normal(size=(11, 3))
    if kind == 1:
        points[:, 2] = 0.0  # coplanar: the case PyPI's miniball fails on
    elif kind == 2:
        points[:, 1:] = points[:, :1] * [2.0, -1.0]  # collinear
    center, radius = smallest_enclosing_sphere(points)
    want_center, want_radius = brute_force_enclosing_sphere(points)
    assert radius == pytest.approx(want_radius, rel=1e-9)
    np.testing.assert_allclose(center, want_center, atol=1e-8)


def test_welzl_handles_large_point_sets_without_deep_recursion():
    # Every point on the sphere: the core set would be all of them. A recursion as deep as
    # the point count would pass Python's limit (1000).
    from nis_fast.core.normalization import _welzl

    rng = np.random.default_rng(1)
    points = rng.normal(size=(5000, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    center, radius = _welzl(points[rng.permutation(len(points))])
    assert np.all(np.linalg.norm(points - center, axis=1) <= radius * (1 + 1e-9))
    assert radius == pytest.approx(1.0, abs=1e-3) and np.linalg.norm(center) < 1e-3


def test_smallest_enclosing_sphere_encloses_points_far_from_the_origin():
    """The sphere is solved on centred, rescaled points; mapping its centre back rounds it by up to
    an ulp of the offset, which the radius must absorb (a sphere of radius 1e-3 at 1e8 missed its
    points by up to 3e-6 before)."""
    rng = np.random.default_rng(3)
    for offset in (0.0, 1e3, 1e6, 1e8):
        points = rng.normal(size=(2000, 3))
        points = offset + 1e-3 * points / np.linalg.norm(points, axis=1, keepdims=True)
        center, radius = smallest_enclosing_sphere(points)
        assert np.all(np.linalg.norm(points - center, axis=1) <= radius)
        assert radius <= 1e-3 * (1 + 1e-6) + 1e-15 * offset


def test_smallest_enclosing_sphere_is_not_the_bounding_box_sphere():
    # A right triangle's corners: the box-centre sphere is larger than the exact one.
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-1, 1, size=(5000, 3)) * [1, 1, 0.01], [[3, 0, 0]]])
    center, radius = smallest_enclosing_sphere(points)
    assert np.all(np.linalg.norm(points - center, axis=1) <= radius * (1 + 1e-12))
    box_center = (points.min(0) + points.max(0)) / 2
    assert radius < np.linalg.norm(points - box_center, axis=1).max() - 1e-3


def cube():
    box = trimesh.creation.box()
    return np.asarray(box.vertices), np.asarray(box.faces)


def test_inputs_path_trimesh_arrays_and_tensors_agree(tmp_path):
    torch = pytest.importorskip("torch")
    v, f = cube()
    path = tmp_path / "cube.ply"
    trimesh.Trimesh(v, f).export(path)
    meshes = [nf.load_mesh(path), nf.load_mesh(trimesh.Trimesh(v, f)), nf.load_mesh((v, f)),
              nf.load_mesh((torch.from_numpy(v).float(), torch.from_numpy(f)))]
    for m in meshes:
        assert m.report["watertight"] and m.faces.shape == (12, 3)
        assert m.transform.scale == pytest.approx(0.9 / np.sqrt(0.75), rel=1e-6)
    assert "cube.ply" in meshes[0].name


@pytest.mark.parametrize("vertices, faces, message", [
    (np.zeros((0, 3)), np.zeros((0, 3), int), "empty"),
    (np.eye(3), np.zeros((0, 3), int), "empty"),
    (np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0.0]]), [[0, 1, 2]], "NaN or infinite"),
    (np.array([[0, 0, 0], [1, 0, 0], [0, np.inf, 0.0]]), [[0, 1, 2]], "NaN or infinite"),
    (np.eye(3), [[0, 1, 3]], "out of range"),
    (np.eye(3), [[0, 1, -1]], "out of range"),
    (np.eye(3), [[0, 1, 2, 0]], r"shape \(F, 3\)"),
    (np.eye(3)[:, :2], [[0, 1, 2]], r"shape \(V, 3\)"),
    (np.eye(3), [[0, 1.5, 2]], "integers"),
    (np.array([["a", "b", "c"]] * 3), [[0, 1, 2]], "real numbers"),
    (np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2.0]]), [[0, 1, 2]], "degenerate"),
    (np.ones((3, 3)), [[0, 1, 2]], "degenerate"),
])
def test_bad_arrays_get_one_clear_error(vertices, faces, message):
    with pytest.raises(nf.MeshError, match=message):
        nf.load_mesh((np.asarray(vertices), np.asarray(faces)), name="bad")


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(nf.MeshError, match="no such file"):
        nf.load_mesh(tmp_path / "missing.obj")
    junk = tmp_path / "junk.stl"
    junk.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(nf.MeshError, match="junk.stl"):
        nf.load_mesh(junk)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(nf.MeshError, match="empty.obj"):
        nf.load_mesh(empty)
    with pytest.raises(nf.MeshError, match="expected a path"):
        nf.load_mesh(42)


def test_defects_are_handled_with_a_warning():
    v, f = cube()
    cases = {
        "boundary edges": (v, f[:-1]),  # open
        "duplicate faces": (v, np.concatenate([f, f[:1]])),
        "inconsistent": (v, np.concatenate([f[:-1], f[-1:, ::-1]])),
        "degenerate": (np.concatenate([v, [[0.1, 0.1, 0.1]]]), np.concatenate([f, [[0, 0, 8]]])),
    }
    for phrase, (vv, ff) in cases.items():
        with pytest.warns(MeshWarning, match=phrase):
            mesh = nf.load_mesh((vv, ff))
        assert len(mesh.faces) == len(ff)  # kept, not silently dropped


def test_huge_and_tiny_coordinates_normalise_the_same():
    v, f = cube()
    ref = nf.load_mesh((v, f)).unit_vertices
    for s in (1e-99, 1e-30, 1e-12, 1e12, 1e30, 1e99):
        np.testing.assert_allclose(nf.load_mesh((v * s + 3 * s, f)).unit_vertices, ref, atol=1e-9)


def test_transform_matrix_and_dict_round_trip():
    mesh = nf.load_mesh(cube())
    m = mesh.transform.matrix()
    homog = np.c_[mesh.vertices, np.ones(len(mesh.vertices))]
    np.testing.assert_allclose((homog @ m.T)[:, :3], mesh.unit_vertices)
    again = Normalization.from_dict(mesh.transform.to_dict())
    np.testing.assert_array_equal(again.center, mesh.transform.center)
    with pytest.raises(ValueError):
        Normalization.from_dict({"center": [0, 0], "scale": 1.0})
    with pytest.raises(ValueError):
        Normalization.from_dict({"center": [0, 0, 0], "scale": -1.0})


@pytest.mark.parametrize("ext", ["obj", "ply", "stl", "off", "glb"])
def test_every_supported_format_loads(tmp_path, ext):
    v, f = cube()
    path = tmp_path / f"cube.{ext}"
    trimesh.Trimesh(v, f).export(path)
    mesh = nf.load_mesh(path)
    assert mesh.report["watertight"] and len(mesh.faces) == 12
    assert mesh.transform.scale == pytest.approx(0.9 / np.sqrt(0.75), rel=1e-6)


@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_coordinates_outside_the_supported_range_are_refused(scale):
    v, f = cube()
    with pytest.raises(nf.MeshError, match="supported range"):
        nf.load_mesh((v * scale, f))


@pytest.mark.parametrize("name", MESH_FILES)
def test_watertight_is_the_engines_one_closed(name):
    """report['watertight'] is the BVH build's definition of a closed mesh (MeshSDF.closed), not a second one."""
    mesh = nf.load_mesh(mesh_path(name), warn=False)
    assert mesh.report["watertight"] == nf.MeshSDF(mesh).closed


def test_collapsed_and_flipped_faces_open_a_mesh():
    V = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    tetra = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    cases = {"tetrahedron": (tetra, True), "with a collapsed face": (np.vstack([tetra, [[0, 0, 1]]]), False),
             "with a face flipped": (np.vstack([tetra[:3], tetra[3:, ::-1]]), False),
             "with a face missing": (tetra[:3], False)}
    for what, (F, closed) in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeshWarning)
            mesh = nf.load_mesh((V, F))
        assert mesh.report["watertight"] == closed == nf.MeshSDF(mesh).closed, what


def _weld_reference(vertices, faces):
    """The welding of load_mesh by np.unique on rows (what _merge_duplicate_vertices computes by a sort)."""
    extent = float(np.ptp(vertices, axis=0).max())
    keys = np.round((vertices - vertices.min(axis=0)) / (extent * 1e-9))
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(vertices):  # nothing to weld: the mesh as it was
        return vertices, faces
    return vertices[first], inverse.reshape(-1)[faces]


@pytest.mark.parametrize("name", MESH_FILES)
def test_report_counts_match_the_numpy_twin(name):
    mesh = nf.load_mesh(mesh_path(name), warn=False)
    expected = _mesh_defects(mesh.vertices, mesh.faces)
    assert {k: mesh.report[k] for k in expected} == expected


def test_report_counts_on_random_broken_meshes():
    """Random faces over few vertices: duplicates, flips, holes, non-manifold fans and collapsed faces."""
    rng = np.random.default_rng(0)
    for trial in range(30):
        n_v = int(rng.integers(4, 12))
        V = rng.normal(size=(n_v, 3))
        F = rng.integers(0, n_v, size=(int(rng.integers(1, 40)), 3))
        if (F[:, 0] == F[:, 1]).all():
            continue
        report = nf.mesh.mesh_report(V, F.astype(np.int32))
        assert {k: report[k] for k in ("duplicate_faces", "boundary_edges", "non_manifold_edges",
                                       "inconsistent_edges")} == _mesh_defects(V, F), trial


@pytest.mark.parametrize("name", MESH_FILES)
def test_welding_matches_unique_on_rows(name):
    import trimesh as tm

    raw = tm.load(mesh_path(name), force="mesh", process=False)
    V, F = np.asarray(raw.vertices, dtype=np.float64), np.asarray(raw.faces)
    mesh = nf.load_mesh(mesh_path(name), warn=False)
    ref_v, ref_f = _weld_reference(V, F)
    np.testing.assert_array_equal(mesh.vertices, ref_v)
    np.testing.assert_array_equal(mesh.faces, ref_f)
