"""The shared NIS_HD closest-point-on-triangle maths, CPU build vs a float64 numpy reference."""
import numpy as np
import pytest

from nis_fast.ops import native as _backend
from reference import _closest_point_on_triangles
from nis_fast.ops.triangle import closest_point_on_triangles


def random_cases(n, seed):
    rng = np.random.default_rng(seed)
    tri = rng.normal(size=(n, 3, 3))
    # Points near the triangle, in every Voronoi region, and far away.
    p = tri.mean(axis=1) + rng.normal(size=(n, 3)) * rng.choice([0.01, 0.5, 3.0, 100.0], size=(n, 1))
    return p, tri


def degenerate_cases(seed):
    rng = np.random.default_rng(seed)
    a, d = rng.normal(size=(3, 3)), rng.normal(size=(3,))
    tris = [
        np.stack([a[0], a[0], a[0]]),  # all three corners coincide
        np.stack([a[0], a[0], a[1]]),  # two corners coincide
        np.stack([a[0], a[0] + d, a[0] + 2.5 * d]),  # collinear
        np.stack([a[0], a[0] + d, a[0] + d * (1 + 1e-12)]),  # sliver
        np.stack([a[0], a[1], a[0] + (a[1] - a[0]) * 0.5 + 1e-13]),  # near-collinear
    ]
    tri = np.repeat(np.stack(tris), 200, axis=0)
    p = tri.mean(axis=1) + rng.normal(size=(len(tri), 3)) * 2.0
    return p, tri


@pytest.mark.parametrize("seed", [0, 1])
def test_random_triangles_float64(seed):
    p, tri = random_cases(20000, seed)
    got, bary, region = closest_point_on_triangles(p, tri)
    want, want_d = _closest_point_on_triangles(p, tri)
    got_d = np.linalg.norm(got - p, axis=1)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, want, atol=1e-9 * (1 + np.abs(p).max()))
    # Barycentrics reproduce the point and sum to one; regions cover all seven kinds.
    np.testing.assert_allclose(np.einsum("ij,ijk->ik", bary, tri), got, atol=1e-9 * (1 + np.abs(p).max()))
    np.testing.assert_allclose(bary.sum(axis=1), 1.0, atol=1e-12)
    assert set(np.unique(region)) == set(range(7))


def test_regions_are_consistent_with_barycentrics():
    p, tri = random_cases(5000, 3)
    _, bary, region = closest_point_on_triangles(p, tri)
    zero = np.isclose(bary, 0.0, atol=0)
    face = region == 0
    assert not zero[face].any()  # face region: strictly inside
    for r, corner in ((1, 0), (2, 1), (3, 2)):
        assert np.all(bary[region == r, corner] == 1.0)
    for r, off in ((4, 2), (5, 0), (6, 1)):  # the edge's opposite corner has zero weight
        assert np.all(bary[region == r, off] == 0.0)


def test_degenerate_triangles():
    p, tri = degenerate_cases(7)
    got, bary, _ = closest_point_on_triangles(p, tri)
    want, want_d = _closest_point_on_triangles(p, tri)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(bary))
    np.testing.assert_allclose(np.linalg.norm(got - p, axis=1), want_d, rtol=1e-9, atol=1e-12)


def test_float32_close_to_float64():
    p, tri = random_cases(5000, 4)
    got32, _, _ = closest_point_on_triangles(p.astype(np.float32), tri.astype(np.float32))
    _, want_d = _closest_point_on_triangles(p, tri)
    d32 = np.linalg.norm(got32.astype(np.float64) - p, axis=1)
    np.testing.assert_allclose(d32, want_d, rtol=1e-4, atol=1e-4 * (1 + np.abs(p).max()))


def test_points_on_the_triangle_are_returned_unchanged():
    rng = np.random.default_rng(5)
    tri = rng.normal(size=(1000, 3, 3))
    w = rng.dirichlet([1, 1, 1], size=1000)
    p = np.einsum("ij,ijk->ik", w, tri)
    got, _, _ = closest_point_on_triangles(p, tri)
    np.testing.assert_allclose(got, p, atol=1e-12)
    # Exactly on vertices.
    got, _, region = closest_point_on_triangles(tri[:, 1].copy(), tri)
    np.testing.assert_array_equal(got, tri[:, 1])
    assert np.all(region == 2)


def test_torch_inputs_give_torch_outputs():
    torch = pytest.importorskip("torch")
    p, tri = random_cases(100, 6)
    got, _, region = closest_point_on_triangles(torch.from_numpy(p), torch.from_numpy(tri))
    assert isinstance(got, torch.Tensor) and region.dtype == torch.int32
    np.testing.assert_allclose(got.numpy(), closest_point_on_triangles(p, tri)[0])


def test_empty_and_bad_inputs():
    got, _, _ = closest_point_on_triangles(np.zeros((0, 3)), np.zeros((0, 3, 3)))
    assert got.shape == (0, 3)
    with pytest.raises(ValueError, match="shape"):
        closest_point_on_triangles(np.zeros((4, 2)), np.zeros((4, 3, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        closest_point_on_triangles(np.zeros((4, 3), np.float32), np.zeros((4, 3, 3)))
    with pytest.raises(TypeError):
        closest_point_on_triangles([[0, 0, 0]], np.zeros((1, 3, 3)))


def test_cuda_launch_without_gpu_raises_clearly():
    if _backend.cuda_status()["available"]:
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="CUDA"):
        _backend.native.closest_point_triangles("cuda", "float32", 0, 0, 1, 0, 0, 0, 0)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    import torch

    p, tri = random_cases(10000, 8)
    for dtype in (torch.float32, torch.float64):
        pc, tc = torch.from_numpy(p).to(dtype), torch.from_numpy(tri).to(dtype)
        cpu = closest_point_on_triangles(pc, tc)
        gpu = closest_point_on_triangles(pc.cuda(), tc.cuda())
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=tol * 100, rtol=tol)
        assert (gpu[2].cpu() != cpu[2]).float().mean() < 1e-3
