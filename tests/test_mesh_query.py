"""The BVH queries of nis_fast/ops/mesh_query.py (through MeshSDF): closest point and distance,
winding number, sign, first ray hit, against their brute-force twins over all triangles in
tests/reference.py (`_mesh_closest`, `_mesh_winding`, `_mesh_sdf`, `_mesh_intersect`), libigl's
winding number and Open3D's signed distance, on every shared mesh; then edge-case geometry, far
points, float32 against float64, thread-count and batch-order determinism, and the CUDA entry
against the CPU."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import nis_fast as nf
from nis_fast.ops.native import cuda_available
from reference import _mesh_closest_on_triangles, _mesh_closest, _mesh_intersect, _mesh_winding
from mesh_cases import (MESH_DIR, MESH_FILES, PAIR_BUDGET, SIGN_CASES, WATERTIGHT, check_against_bruteforce, extent,
                        oracle, query_points, raw_mesh, shared_mesh, shared_sdf)


def _closest_on_faces(V, F, face, p):
    """(closest point, distance) of each p[i] on its own triangle F[face[i]] (all pairs, then the
    diagonal: small sets only)."""
    tri = V[F[face]][None]
    cp, d2 = _mesh_closest_on_triangles(p[:, None], tri[..., 0, :], tri[..., 1, :], tri[..., 2, :])
    rows = np.arange(len(p))
    return cp[rows, rows], np.sqrt(d2[rows, rows])


def _distance_to_faces(V, F, face, p):
    return _closest_on_faces(V, F, face, p)[1]


def _far_points(V, n, seed=0):
    """n points in random directions 10, 100 and 1e4 mesh sizes from the mesh's middle."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return (V.min(0) + V.max(0)) / 2 + dirs * extent(V) * np.resize([10.0, 100.0, 1e4], n)[:, None]


# --- against brute force, every mesh -------------------------------------------------------

@pytest.mark.parametrize("name", MESH_FILES)
def test_closest_matches_bruteforce(name):
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    p, ref_dist, _ = oracle(name)
    far = _far_points(mesh.vertices, 12)
    p = np.concatenate([p, far])
    ref_dist = np.concatenate([ref_dist, _mesh_closest(mesh.vertices, mesh.faces, far)[0]])
    dist, point, face = sdf.closest(p)
    tol = dict(rtol=1e-10, atol=1e-13 * extent(mesh.vertices))
    np.testing.assert_allclose(dist, ref_dist, **tol)
    # The face reported is a closest one (its own distance is the minimum), and the point reported
    # is that face's closest point (unique: a triangle is convex), so both are pinned down.
    face_point, face_dist = _closest_on_faces(mesh.vertices, mesh.faces, face, p)
    np.testing.assert_allclose(face_dist, ref_dist, **tol)
    assert (np.abs(point - face_point) <= 1e-12 * (extent(mesh.vertices) + np.abs(p).max(1, keepdims=True))).all()
    assert (sdf.sdf(far) > 0).all()


@pytest.mark.parametrize("name", MESH_FILES)
def test_winding_and_signed_distance_match_bruteforce(name):
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    p, ref_dist, ref_w = oracle(name)
    w = sdf.winding(p)
    assert np.abs(w - ref_w).max() < 0.1  # beta = 2: far below what the sign needs
    decided = np.abs(ref_w - 0.5) > 0.1  # away from the ambiguous half-way value
    assert decided.mean() > 0.5
    assert np.array_equal(sdf.contains(p)[decided], (ref_w > 0.5)[decided])
    ref_sdf = np.where(ref_w > 0.5, -ref_dist, ref_dist)
    np.testing.assert_allclose(sdf.sdf(p)[decided], ref_sdf[decided], rtol=1e-10, atol=1e-13 * extent(mesh.vertices))


@pytest.mark.parametrize("name", [n for n in WATERTIGHT if n in MESH_FILES])
def test_pseudonormal_sign_on_watertight_meshes(name):
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    assert mesh.report["watertight"] and sdf._bvh.closed
    p, ref_dist, ref_w = oracle(name)
    ref_sdf = np.where(ref_w > 0.5, -ref_dist, ref_dist)
    np.testing.assert_allclose(sdf.sdf(p, sign="pseudonormal"), ref_sdf, rtol=1e-10,
                               atol=1e-13 * extent(mesh.vertices))


def test_accuracy_parameter_beta():
    name = "spot.obj" if "spot.obj" in MESH_FILES else pytest.skip("spot.obj not in the shared meshes")
    p, _, ref_w = oracle(name)
    coarse = np.abs(nf.MeshSDF(shared_mesh(name), beta=1.5).winding(p) - ref_w).max()
    fine = np.abs(nf.MeshSDF(shared_mesh(name), beta=8.0).winding(p) - ref_w).max()
    assert fine < 2e-3 and fine < coarse


@pytest.mark.parametrize("name", ["armadillo.obj", "teapot.obj", "two-boxes-bad-self-union.ply"])
def test_float32_agrees_with_float64(name):
    if name not in MESH_FILES:
        pytest.skip(f"{name} not in the shared meshes")
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    p, ref_dist, ref_w = oracle(name)
    d32, pt32, _ = sdf.closest(p.astype(np.float32))
    assert d32.dtype == np.float32 and pt32.dtype == np.float32
    np.testing.assert_allclose(d32, ref_dist, rtol=1e-4, atol=1e-5 * extent(mesh.vertices))
    decided = np.abs(ref_w - 0.5) > 0.1
    assert np.array_equal(sdf.contains(p.astype(np.float32))[decided], (ref_w > 0.5)[decided])


@pytest.mark.parametrize("name", ["spot.obj", "two-boxes-bad-self-union.ply", "teapot.obj"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_batches_keep_the_winding_sign(name, dtype):
    """Big batches run in Morton order, and on closed meshes a point may take the sign of a
    neighbour whose empty ball overlaps its own: check that against per-point winding numbers."""
    if name not in MESH_FILES:
        pytest.skip(f"{name} not in the shared meshes")
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    p = query_points(mesh.vertices, mesh.faces, 20000, seed=9).astype(dtype)
    d, w = sdf.sdf(p), sdf.winding(p)
    decided = np.abs(w - 0.5) > 0.1
    assert np.array_equal((d < 0)[decided], (w > 0.5)[decided])
    np.testing.assert_allclose(np.abs(d), sdf.closest(p)[0], rtol=0)


def test_results_do_not_depend_on_the_thread_count():
    """Queries run in runs whose length depends on the batch alone (hints and sign reuse restart at
    each): any thread count, the same bits."""
    from nis_fast.ops.native import native

    mesh, sdf = shared_mesh("spot.obj"), shared_sdf("spot.obj")
    p = query_points(mesh.vertices, mesh.faces, 20000, seed=10)
    before = native.cpu_threads()
    try:
        native.set_cpu_threads(1)
        one = sdf.sdf(p), sdf.closest(p)
        native.set_cpu_threads(3)
        three = sdf.sdf(p), sdf.closest(p)
    finally:
        native.set_cpu_threads(before)
    assert np.array_equal(one[0], three[0])
    for a, b in zip(one[1], three[1]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_morton_order_answers_every_point_once(threads):
    """A big batch runs in Morton order (a radix sort split over the threads); small ones run in
    input order. The closest distance does not depend on the order the tree is searched in, so
    one batch of 20k and twenty of 1000 must agree point by point (to rounding: where triangles
    tie, the one found first gives the closest point: a few ulps of the coordinates)."""
    from nis_fast.ops.native import native

    mesh, sdf = shared_mesh("spot.obj"), shared_sdf("spot.obj")
    p = query_points(mesh.vertices, mesh.faces, 20000, seed=11).astype(np.float32)
    before = native.cpu_threads()
    try:
        native.set_cpu_threads(threads)
        whole = sdf.closest(p)[0]
        pieces = np.concatenate([sdf.closest(p[i:i + 1000])[0] for i in range(0, len(p), 1000)])
    finally:
        native.set_cpu_threads(before)
    # Rounding of the closest point scales with the coordinates, not the distance.
    np.testing.assert_allclose(whole, pieces, rtol=0, atol=4 * np.finfo(np.float32).eps * extent(mesh.vertices))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_through_edges_and_vertices_of_a_cube(dtype):
    """A cube sampled on a grid aligned with its faces, edges and vertices: the segments between
    neighbouring queries run inside face planes and through edges, where counting crossings is
    ambiguous; the signs must still be exact."""
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    sdf = nf.MeshSDF((box.vertices, box.faces))
    assert sdf.closed
    g = np.linspace(-1.0, 1.0, 41)
    p = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3).astype(dtype)
    d = sdf.sdf(p)
    box_sdf = np.abs(p.astype(np.float64)).max(axis=1) - 0.5  # negative exactly inside the cube
    off = np.abs(box_sdf) > 1e-6
    assert np.array_equal(d[off] < 0, box_sdf[off] < 0)
    assert np.abs(d[~off]).max() <= 1e-6


def _tessellated_cube(n=8):
    """The cube [-0.5, 0.5]^3, each face an n x n grid of quads split on a diagonal, outward faces."""
    g = np.linspace(-0.5, 0.5, n + 1)
    V, F = [], []
    for axis in range(3):
        for side in (-0.5, 0.5):
            u, v = np.meshgrid(g, g, indexing="ij")
            pts = np.zeros(u.shape + (3,))
            pts[..., axis], pts[..., (axis + 1) % 3], pts[..., (axis + 2) % 3] = side, u, v
            idx = len(V) + np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
            V.extend(pts.reshape(-1, 3))
            a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
            for tri in (np.stack([a, b, c], -1), np.stack([a, c, d], -1)):
                F.extend(tri.reshape(-1, 3))
    V, F = np.array(V), np.array(F)
    normal = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    centre = V[F].mean(1)
    axis = np.abs(centre).argmax(1)  # the face's axis: the only coordinate at +-0.5
    rows = np.arange(len(F))
    flip = normal[rows, axis] * centre[rows, axis] < 0
    F[flip] = F[flip][:, ::-1]
    return V, F


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_faces_with_edges_along_the_normal(dtype):
    """Axis-aligned flat patches whose longest edge lies along a child's mean normal: the oriented
    box must still be a lower bound (its frame was once built from a rounding-noise direction)."""
    V, F = _tessellated_cube()
    sdf = nf.MeshSDF((V, F))
    assert sdf.closed
    rng = np.random.default_rng(6)
    p = np.concatenate([rng.uniform(-0.7, 0.7, (3000, 3)), V[rng.integers(0, len(V), 3000)] +
                        rng.normal(scale=0.02, size=(3000, 3)), [[0.0625, 0.0625, -0.5]]]).astype(dtype)
    q = np.abs(p.astype(np.float64)) - 0.5
    exact = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(sdf.sdf(p), exact, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sign_next_to_vertices_and_edges_of_a_sphere(dtype):
    """Points just inside and just outside every vertex and edge midpoint of a closed mesh: the
    segments between Morton neighbours cross the surface right at vertices and edges, where the
    crossing count must either be certain or give way to the winding number."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    V, F = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    edges = np.asarray(sphere.edges_unique)
    features = np.concatenate([V, (V[edges[:, 0]] + V[edges[:, 1]]) / 2])
    rng = np.random.default_rng(5)
    scale = np.concatenate([1 + rng.uniform(-1, 1, (len(features), 1)) * 1e-3,
                            1 + rng.uniform(-1, 1, (len(features), 1)) * 1e-6])
    p = (np.concatenate([features, features]) * scale).astype(dtype)
    sdf = nf.MeshSDF((V, F))
    assert sdf.closed and len(p) > 4096  # large enough to run in Morton order with sign reuse
    inside = _mesh_winding(V, F, p.astype(np.float64)) > 0.5
    d = sdf.sdf(p)
    # float32 rounds some of the 1e-6 offsets onto the surface, or to within its rounding of it
    # (~1e-8 here), where the sign may go either way.
    off = np.abs(d) > (1e-7 if dtype == np.float32 else 0)
    assert off.mean() > 0.9
    assert np.array_equal((d < 0)[off], inside[off])


def _turned_icosphere():
    """A closed, certified sphere turned off the axes (so no coordinate symmetry helps rounding)."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    c, s = np.cos(0.7), np.sin(0.7)
    turn = np.array([[c, -s, 0], [s * c, c * c, -s], [s * s, c * s, c]])
    return np.asarray(sphere.vertices) @ turn.T, np.asarray(sphere.faces)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_points_far_away_are_outside(dtype):
    """A triangle subtends at most its area over its squared distance, so beyond sqrt(area / pi) the
    winding number is below 1/4: outside, whatever the far-away search rounds to (float32 squared
    distances tie between triangles a mesh size apart from ~1e6 mesh sizes out; at 1e9 the
    pseudonormal of the tied triangle said inside for ~46 % of these points). The distances stay
    finite where float32 squares of them overflow."""
    V, F = _turned_icosphere()
    sdf = nf.MeshSDF(raw_mesh(V, F))
    assert sdf.pseudonormal_exact
    rng = np.random.default_rng(11)
    dirs = rng.normal(size=(20000, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    for radius in (3.0, 1e3, 1e7, 1e9, 1e30):
        p = (dirs * radius).astype(dtype)
        for sign in ("winding", "pseudonormal"):
            d = sdf.sdf(p, sign=sign)
            assert (d > 0).all(), (radius, sign)
            if radius >= 1e7:  # finite, though float32 squares overflow from ~1e19 out
                np.testing.assert_allclose(d, np.linalg.norm(p.astype(np.float64), axis=1), rtol=1e-6)
    # Just inside the bound's reach nothing changes: points inside the sphere stay inside.
    assert (sdf.sdf((dirs * 0.5).astype(dtype)) < 0).all()


@pytest.mark.parametrize("dtype, distance, tol", [(np.float32, 1e3, 4e-7), (np.float64, 1e7, 1e-14)])
def test_closest_point_stays_on_its_face_far_away(dtype, distance, tol):
    """Points far out along the faces' normals: each closest point lies on its triangle to the
    rounding of the mesh's coordinates, not to the rounding of the query's (~eps * distance).
    (Which of the faces near the foot is returned is up to rounding that far out.)"""
    V, F = _turned_icosphere()
    a, b, c = (V[F[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    p = ((a + b + c) / 3 + n * distance).astype(dtype)
    dist, q, face = nf.MeshSDF(raw_mesh(V, F)).closest(p)
    q = q.astype(np.float64)
    off = [_mesh_closest(V, F[f][None], q[i][None])[0][0] for i, f in enumerate(face)]
    assert max(off) < tol
    np.testing.assert_allclose(dist, distance, rtol=1e-6)


# --- against libigl and Open3D -------------------------------------------------------------

@pytest.mark.parametrize("name", MESH_FILES)
def test_sign_agrees_with_libigl_winding_number(name):
    igl = pytest.importorskip("igl", reason="libigl is not installed (pip install libigl)")
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    p = oracle(name)[0]
    ref_w = igl.winding_number(mesh.vertices, mesh.faces.astype(np.int64), p)
    decided = np.abs(ref_w - 0.5) > 0.1
    assert np.array_equal(sdf.contains(p)[decided], (ref_w > 0.5)[decided])


@pytest.mark.parametrize("name", [n for n in WATERTIGHT if n in MESH_FILES])
def test_signed_distance_agrees_with_open3d_on_watertight_meshes(name):
    o3d = pytest.importorskip("open3d", reason="open3d is not installed (pip install open3d; needs libusb-1.0-0)")
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    p = oracle(name)[0]
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    ref = scene.compute_signed_distance(o3d.core.Tensor(p.astype(np.float32))).numpy()
    ours = sdf.sdf(p)
    far_enough = np.abs(ref) > 1e-4 * extent(mesh.vertices)  # float32 sign right at the surface is noise
    assert np.array_equal(np.sign(ours[far_enough]), np.sign(ref[far_enough]))
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-4, atol=1e-5 * extent(mesh.vertices))


# --- rays ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["spot.obj", "teapot.obj", "thingi10k_138201.stl"])
def test_intersect_matches_bruteforce(name):
    if name not in MESH_FILES:
        pytest.skip(f"{name} not in the shared meshes")
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    rng = np.random.default_rng(3)
    n = int(np.clip(PAIR_BUDGET // len(mesh.faces), 40, 300))
    origins = query_points(mesh.vertices, mesh.faces, n, seed=4)
    directions = rng.normal(size=(n, 3))
    t, face = sdf.intersect(origins, directions)
    ref_t, ref_face = _mesh_intersect(mesh.vertices, mesh.faces, origins, directions)
    assert np.array_equal(np.isinf(t), np.isinf(ref_t))
    hit = np.isfinite(ref_t)
    assert hit.any() and (~hit).any()
    np.testing.assert_allclose(t[hit], ref_t[hit], rtol=1e-9)
    assert np.array_equal(face == -1, ~hit)
    # The face reported is hit at that t (ties between faces sharing an edge can pick either).
    hits = origins[hit] + t[hit, None] * directions[hit]
    assert _distance_to_faces(mesh.vertices, mesh.faces, face[hit], hits).max() < 1e-9 * extent(mesh.vertices)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rays_through_edges_and_vertices_do_not_slip_through(dtype):
    """Watertightness: a ray from inside a closed mesh through one of its vertices or the middle of
    one of its edges lands on a triangle there (t = 1 up to rounding), in either precision. With
    Moller-Trumbore, both triangles of an edge can reject such a ray by rounding (172 of the 1920
    edge middles and 34 of the 642 vertices of this sphere were missed). The same for a square split
    on its diagonal, tilted, and rays from outside through the diagonal."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    V, F = sphere.vertices, sphere.faces
    edges = sphere.edges_unique
    targets = np.concatenate([V, (V[edges[:, 0]] + V[edges[:, 1]]) / 2]).astype(dtype)
    centre = np.array([0.01, -0.02, 0.015], dtype=dtype)  # inside, off every symmetry plane
    t, face = nf.MeshSDF(raw_mesh(V, F)).intersect(np.broadcast_to(centre, targets.shape), targets - centre)
    assert (face >= 0).all() and t.dtype == dtype
    np.testing.assert_allclose(t, 1.0, atol=1e-5 if dtype == np.float32 else 1e-12)

    c, s = np.cos(0.7), np.sin(0.7)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array(
        [[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]])
    square = raw_mesh(np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float) @ rotation.T,
                       np.array([[0, 1, 2], [0, 2, 3]]))
    x = np.linspace(0.01, 0.99, 999)
    diagonal = (np.stack([x, x, 0 * x], 1) @ rotation.T).astype(dtype)
    origin = np.array([0.2, -0.3, 2.0], dtype=dtype)
    t, face = nf.MeshSDF(square).intersect(np.broadcast_to(origin, diagonal.shape), diagonal - origin)
    assert (face >= 0).all()
    np.testing.assert_allclose(t, 1.0, atol=1e-5 if dtype == np.float32 else 1e-12)


# --- edge cases ----------------------------------------------------------------------------

def test_single_triangle():
    V = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    F = np.array([[0, 1, 2]])
    p = np.random.default_rng(0).uniform(-1, 2, (200, 3))
    sdf = check_against_bruteforce(V, F, p)
    assert sdf.closest([0.25, 0.25, 2.0])[0] == pytest.approx(2.0)
    assert sdf.closest([-1.0, 0, 0])[0] == pytest.approx(1.0)


def test_degenerate_triangles_and_duplicate_vertices():
    rng = np.random.default_rng(1)
    V = rng.normal(size=(40, 3))
    V = np.concatenate([V, V[:10]])  # duplicate vertices, referenced separately
    F = rng.integers(0, len(V), (60, 3))
    F[:5, 2] = F[:5, 1]  # collapsed (repeated index)
    V[F[10:15, 2]] = (V[F[10:15, 0]] + V[F[10:15, 1]]) / 2  # collinear corners: zero area
    p = rng.normal(size=(300, 3)) * 2
    check_against_bruteforce(V, F, p)


@pytest.mark.parametrize("leaf_size", [1, 2, 3, 4])
def test_every_leaf_size_matches_bruteforce(leaf_size):
    # Leaves of 1-3 triangles leave lanes of their packet unused: they must never win or count.
    rng = np.random.default_rng(4)
    V = rng.normal(size=(60, 3))
    F = rng.integers(0, len(V), (90, 3))
    F[:3, 2] = F[:3, 1]  # zero-area triangles too
    check_against_bruteforce(V, F, rng.normal(size=(300, 3)) * 2, leaf_size=leaf_size)


def test_points_on_the_surface_edges_and_vertices():
    name = "fandisk.obj" if "fandisk.obj" in MESH_FILES else pytest.skip("fandisk.obj not in the shared meshes")
    mesh, sdf = shared_mesh(name), shared_sdf(name)
    V, F = mesh.vertices, mesh.faces
    on_vertex = V[F[:50, 0]]
    on_edge = (V[F[:50, 0]] + V[F[:50, 1]]) / 2
    on_face = V[F[:50]].mean(axis=1)
    atol = 1e-13 * extent(V)
    for p in (on_vertex, on_edge, on_face):
        for sign in ("winding", "pseudonormal"):
            assert np.abs(sdf.sdf(p, sign=sign)).max() <= atol
        d, cp, _ = sdf.closest(p)
        assert d.max() <= atol and np.abs(cp - p).max() <= atol
    assert np.array_equal(sdf.sdf(on_vertex), sdf.sdf(on_vertex))  # deterministic


@pytest.mark.parametrize("scale, dtype", [(1e99, np.float64), (1.0, np.float64), (1.0, np.float32), (1e30, np.float32)])
def test_winding_number_is_finite_however_far_the_point(scale, dtype):
    """The far-field expansion's products stay finite for points any distance away (they reached
    NaN for a point 1e30 mesh sizes from a mesh at 1e100, and at 3e38 in float32)."""
    V, F = _turned_icosphere()
    sdf = nf.MeshSDF((V * scale, F))
    dirs = np.random.default_rng(13).normal(size=(200, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    top = 0.9 * float(np.finfo(dtype).max)
    for distance in (1e3, 1e10, 1e20, 1e30, 3e38, 1e100, 1e300):
        if distance * scale > top:
            continue
        w = sdf.winding((dirs * distance * scale).astype(dtype))
        assert np.isfinite(w).all() and np.abs(w).max() < 1e-3, distance


def test_points_far_beyond_float32_range_give_a_valid_face():
    sdf = nf.MeshSDF(nf.load_mesh(MESH_DIR / "spot.obj", warn=False), space="unit")
    far = np.array([[3e19, 0, 0], [-3e19, 1e19, 0]], dtype=np.float32)
    _, _, faces = sdf.closest(far)
    assert np.all((faces >= 0) & (faces < len(sdf.mesh.faces)))


# --- where the pseudonormal sign stands in for the winding number --------------------------

@functools.lru_cache(maxsize=None)
def _sign_case_oracle(case):
    """Points near every vertex and edge midpoint (1e-2, 1e-4 and 1e-6 relative offsets) and
    uniform in the bounds (over 4096 in all: Morton order and sign reuse), with brute-force signs."""
    V, F = SIGN_CASES[case][0]()
    edges = np.unique(np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), axis=1), axis=0)
    features = np.concatenate([V, (V[edges[:, 0]] + V[edges[:, 1]]) / 2])
    rng = np.random.default_rng(11)
    centre = V.mean(0)
    near = [centre + (features - centre) * (1 + rng.uniform(-1, 1, (len(features), 1)) * rel)
            + rng.normal(scale=rel, size=features.shape) for rel in (1e-2, 1e-4, 1e-6)]
    uniform = rng.uniform(V.min(0) - 0.1, V.max(0) + 0.1, (max(2500, 4500 - 3 * len(features)), 3))
    p = np.concatenate(near + [uniform])
    return V, F, p, _mesh_winding(V, F, p) > 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(SIGN_CASES))
def test_winding_sign_equals_bruteforce_where_the_pseudonormal_stands_in(case, dtype):
    """The sign must be the brute-force winding number's, whether it came from the pseudonormal,
    the carried anchors or the winding number, next to edges, vertices, folds and pinches."""
    V, F, p, inside = _sign_case_oracle(case)
    d = nf.MeshSDF(raw_mesh(V, F)).sdf(p.astype(dtype))
    # Within float32 rounding of the surface the sign may go either way.
    off = np.abs(d) > (1e-6 if dtype == np.float32 else 1e-13)
    assert off.mean() > 0.8
    assert np.array_equal((d < 0)[off], inside[off])


# --- CUDA against the CPU ------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["spot.obj", "teapot.obj", "armadillo.obj"])
def test_cuda_matches_cpu(name):
    import torch

    if name not in MESH_FILES:
        pytest.skip(f"{name} not in the shared meshes")
    sdf = shared_sdf(name)
    p = oracle(name)[0]
    rng = np.random.default_rng(7)
    directions = rng.normal(size=p.shape)
    for dtype in (torch.float64, torch.float32):
        pg = torch.tensor(p, dtype=dtype, device="cuda")
        exact = dtype == torch.float64
        tol = dict(rtol=1e-12, atol=1e-12) if exact else dict(rtol=1e-5, atol=1e-6 * extent(sdf.mesh.vertices))
        w = sdf.winding(pg.cpu()).numpy()
        decided = np.abs(w - 0.5) > 0.1  # fast-math float32 may flip points right at w = 1/2
        for sign in ("winding", "pseudonormal"):
            gpu, cpu = sdf.sdf(pg, sign=sign).cpu().numpy(), sdf.sdf(pg.cpu(), sign=sign).numpy()
            np.testing.assert_allclose(np.abs(gpu), np.abs(cpu), **tol)
            assert np.array_equal(np.sign(gpu[decided]), np.sign(cpu[decided]))
        dist, point, face = sdf.closest(pg)
        assert dist.device.type == "cuda"
        np.testing.assert_allclose(point.cpu().numpy(), sdf.closest(pg.cpu())[1].numpy(), **tol)
        np.testing.assert_allclose(sdf.winding(pg).cpu().numpy(), w, atol=1e-4)
        dg = torch.tensor(directions, dtype=dtype, device="cuda")
        t, f = sdf.intersect(pg, dg)
        t_cpu, f_cpu = sdf.intersect(pg.cpu(), dg.cpu())
        np.testing.assert_allclose(t.cpu().numpy(), t_cpu.numpy(), **tol)
        assert np.array_equal(f.cpu().numpy() == -1, f_cpu.numpy() == -1)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_cuda_edge_cases_match_cpu():
    """The CPU tests' edge cases on the GPU: a single triangle, degenerate triangles, points on
    vertices and edges, tiny and huge meshes; rays through every edge and vertex of a sphere all
    hit; empty inputs answer empty on the GPU; NaN is the same one error."""
    import torch
    import trimesh

    rng = np.random.default_rng(21)
    sphere = trimesh.creation.icosphere(subdivisions=3)
    V, F = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    cases = [(np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]])),
             (np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 1, 0]]),
              np.array([[0, 1, 2], [0, 1, 3], [1, 3, 4], [0, 3, 1]])),  # collinear, repeated corner, reversed
             (V, F)]
    if "spot.obj" in MESH_FILES:
        spot = shared_mesh("spot.obj")
        cases += [(spot.vertices * s + 3 * s, spot.faces) for s in (1e-30, 1e30)]
    for V_, F_ in cases:
        sdf = nf.MeshSDF(raw_mesh(V_, F_))
        scale = extent(V_)
        middle = (V_.min(0) + V_.max(0)) / 2
        p = np.concatenate([V_[F_[:, 0]], (V_[F_[:, 0]] + V_[F_[:, 1]]) / 2,
                            middle + rng.uniform(-1, 1, (200, 3)) * scale])
        for dtype in (torch.float64, torch.float32):
            pg = torch.tensor(p, dtype=dtype, device="cuda")
            tol = dict(rtol=1e-12, atol=1e-12 * scale) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6 * scale)
            (dist, point, _), (dist_cpu, point_cpu, _) = sdf.closest(pg), sdf.closest(pg.cpu())
            assert dist.device.type == "cuda"  # faces may differ where they tie; the distance and point not
            np.testing.assert_allclose(dist.cpu().numpy(), dist_cpu.numpy(), **tol)
            np.testing.assert_allclose(point.cpu().numpy(), point_cpu.numpy(), **tol)
            # On the surface (the vertices and edge midpoints) the winding number may go either way
            # (a triangle's solid angle there rests on rounding): compared off it.
            w, off = sdf.winding(pg.cpu()).numpy(), dist_cpu.numpy() > 1e-4 * scale
            np.testing.assert_allclose(sdf.winding(pg).cpu().numpy()[off], w[off], atol=1e-4)
            decided = off & (np.abs(w - 0.5) > 0.1)
            assert np.array_equal(np.sign(sdf.sdf(pg).cpu().numpy())[decided], np.sign(sdf.sdf(pg.cpu()).numpy())[decided])
    centre = torch.tensor([0.01, -0.02, 0.015], dtype=torch.float64)
    targets = torch.tensor(np.concatenate([V, (V[sphere.edges_unique[:, 0]] + V[sphere.edges_unique[:, 1]]) / 2]))
    sdf = nf.MeshSDF(raw_mesh(V, F))
    for dtype in (torch.float64, torch.float32):
        o, d = centre.to(dtype).expand_as(targets).contiguous().cuda(), (targets - centre).to(dtype).cuda()
        t, face = sdf.intersect(o, d)
        assert (face >= 0).all() and torch.allclose(t, torch.ones_like(t), atol=1e-5)
    empty = torch.zeros((0, 3), device="cuda")
    assert sdf.sdf(empty).shape == (0,) and sdf.sdf(empty).device.type == "cuda"
    with pytest.raises(ValueError, match="NaN or infinite"):
        sdf.sdf(torch.tensor([[float("nan"), 0.0, 0.0]], device="cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("n", [2**15 - 1, 2**15, 100_003])
def test_cuda_large_batches_in_morton_order_answer_each_point(n):
    """From 2^15 points a CUDA batch runs in Morton order (a sort on the GPU, then each thread reads
    its point by index and writes its answers there): every answer must land at its own point, as the
    CPU's do (the batch below the threshold runs in input order: the two paths agree)."""
    import torch

    from nis_fast.ops.native import native

    assert (native.cuda_query_order_bytes(n) > 0) == (n >= 2**15)  # the sorted path is taken from 2^15 points
    mesh = shared_mesh("spot.obj")
    sdf = shared_sdf("spot.obj")
    p = np.random.default_rng(n).permutation(query_points(mesh.vertices, mesh.faces, n, seed=n))
    tol = {torch.float64: dict(rtol=1e-12, atol=1e-12),
           torch.float32: dict(rtol=1e-5, atol=1e-6 * extent(mesh.vertices))}
    for dtype in (torch.float64, torch.float32):
        pg, pc = torch.tensor(p, dtype=dtype, device="cuda"), torch.tensor(p, dtype=dtype)
        dist, point, _ = sdf.closest(pg)
        dist_cpu, point_cpu, _ = sdf.closest(pc)
        np.testing.assert_allclose(dist.cpu().numpy(), dist_cpu.numpy(), **tol[dtype])
        # Where two places on the mesh are equally near (~0.04 % of these points), either may be
        # reported: the GPU's point must then be at the CPU's distance; elsewhere it is the CPU's point.
        point, point_cpu = point.cpu().numpy(), point_cpu.numpy()
        np.testing.assert_allclose(np.linalg.norm(p - point, axis=1), dist_cpu.numpy(), rtol=1e-5, atol=1e-6)
        same = np.all(np.isclose(point, point_cpu, **tol[dtype]), axis=1)
        assert same.mean() > 0.999
        w, w_cpu = sdf.winding(pg).cpu().numpy(), sdf.winding(pc).numpy()
        # The fast winding number is an approximation (~0.05 at most at beta = 2): where rounding
        # tips a node between its expansion and its children, the GPU's and CPU's differ by that much.
        assert np.abs(w - w_cpu).max() < 0.05 and np.mean(np.abs(w - w_cpu) < 1e-4) > 0.999
        decided = np.abs(w_cpu - 0.5) > 0.1
        signed, signed_cpu = sdf.sdf(pg).cpu().numpy(), sdf.sdf(pc).numpy()
        assert np.array_equal(np.signbit(signed[decided]), np.signbit(signed_cpu[decided]))

