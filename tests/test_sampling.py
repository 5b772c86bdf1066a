"""The importance sampler draws |d| ~ exp(-beta |d|) x (pool density), reproducibly;
surface samples are area-uniform."""
import numpy as np
import pytest
import torch
import trimesh

from nis_fast.sampling import importance_samples, surface_samples


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sphere(p):
    return p.norm(dim=-1) - 0.5


class Recorder:
    """An SDF that remembers every distance it returned (the whole pool, in order)."""

    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def __call__(self, p):
        d = self.fn(p)
        self.seen.append(d.clone())
        return d

    @property
    def pool(self):
        return torch.cat(self.seen).double()


def chi_square(observed, expected_prob, n):
    """Pearson statistic over bins with at least 5 expected counts, and the number of such bins."""
    expected = expected_prob * n
    keep = expected >= 5
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum())


def test_drawn_distances_follow_the_reweighted_pool():
    beta, n = 60.0, 100_000
    sdf = Recorder(sphere)
    points, d = importance_samples(sdf, n_samples=n, pool_size=600_000, beta=beta, seed=3, chunk=150_000)
    assert len(sdf.seen) == 4  # the pool went through in chunks
    pool = sdf.pool
    edges = torch.linspace(0, 0.15, 61, dtype=torch.float64)  # 61 bins: 60 of width 0.0025, then the rest
    bins = lambda a: torch.bucketize(a.abs().double(), edges, right=True) - 1  # noqa: E731
    weights = torch.exp(-beta * pool.abs())
    expected = torch.bincount(bins(pool), weights, minlength=61) / weights.sum()
    observed = torch.bincount(bins(d), minlength=61).double()
    stat, dof = chi_square(observed, expected, n)
    assert dof > 40
    assert stat < dof + 6 * np.sqrt(2 * dof), (stat, dof)
    # The same statistic rejects the unweighted pool: the test can fail.
    uniform = torch.bincount(bins(pool), minlength=61).double() / len(pool)
    assert chi_square(observed, uniform, n)[0] > 100 * dof
    # Each drawn distance is the exact SDF of its drawn point.
    assert torch.equal(d, sphere(points))
    assert points.abs().max() <= 1


@pytest.mark.parametrize("fraction", [0.01, 0.25])
def test_uniform_fraction_mixes_in_the_plain_pool(fraction):
    """uniform_fraction f: |d| follows (1 - f) x the reweighted pool + f x the pool itself."""
    beta, n = 60.0, 100_000
    sdf = Recorder(sphere)
    _, d = importance_samples(sdf, n_samples=n, pool_size=400_000, beta=beta, seed=4, chunk=150_000,
                              uniform_fraction=fraction)
    pool = sdf.pool
    edges = torch.cat([torch.linspace(0, 0.15, 61, dtype=torch.float64), torch.linspace(0.2, 1.2, 6).double()])
    bins = lambda a: torch.bucketize(a.abs().double(), edges, right=True) - 1  # noqa: E731
    reweighted = torch.exp(-beta * pool.abs())
    mixture = (1 - fraction) * reweighted / reweighted.sum() + fraction / len(pool)
    expected = torch.bincount(bins(pool), mixture, minlength=len(edges))
    observed = torch.bincount(bins(d), minlength=len(edges)).double()
    stat, dof = chi_square(observed, expected, n)
    assert stat < dof + 6 * np.sqrt(2 * dof), (stat, dof)
    # Far from the surface only the uniform share draws: the paper's sampler alone would not pass.
    far = (d.abs() > 0.2).double().mean()
    assert far == pytest.approx(fraction * float((pool.abs() > 0.2).double().mean()), rel=0.1)


def test_chunks_are_drawn_in_proportion_to_their_weight():
    """Which chunk a draw comes from must follow the chunk's share of the total weight."""
    n, chunk = 100_000, 1000
    skewed = lambda p: sphere(p) + 0.3 * (p[:, 0] > 0.5)  # noqa: E731  (chunks differ by chance only)
    sdf = Recorder(skewed)
    points, d = importance_samples(sdf, n_samples=n, pool_size=10 * chunk + 17, beta=60, seed=1, chunk=chunk)
    pool = sdf.pool
    w = torch.exp(-60 * pool.abs())
    chunk_of = torch.arange(len(pool)) // chunk
    expected = torch.bincount(chunk_of, w) / w.sum()
    # Map each drawn distance back to its pool entry (distances are distinct floats).
    lookup = {float(v): i for i, v in enumerate(pool.float())}
    observed = torch.bincount(torch.tensor([lookup[float(v)] for v in d]) // chunk, minlength=len(expected)).double()
    stat, dof = chi_square(observed, expected, n)
    assert stat < dof + 6 * np.sqrt(2 * dof), (stat, dof)
    assert len(torch.unique(d)) < n  # drawn with replacement from an 10k pool


def test_same_seed_same_samples():
    a = importance_samples(sphere, 5000, 50_000, seed=11)
    b = importance_samples(sphere, 5000, 50_000, seed=11)
    c = importance_samples(sphere, 5000, 50_000, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_numpy_sdf_and_bad_arguments():
    as_numpy = lambda p: np.linalg.norm(p.numpy(), axis=1) - 0.5  # noqa: E731
    points, d = importance_samples(as_numpy, 100, 1000, seed=0)
    assert d.dtype == torch.float32 and torch.allclose(d, sphere(points), atol=1e-6)
    with pytest.raises(ValueError, match="n_samples"):
        importance_samples(sphere, 0, 1000)
    with pytest.raises(ValueError, match="uniform_fraction"):
        importance_samples(sphere, 10, 1000, uniform_fraction=1.0)
    with pytest.raises(ValueError, match="values for"):
        importance_samples(lambda p: p[:, 0][:-1], 10, 100)
    with pytest.raises(ValueError, match="NaN"):
        importance_samples(lambda p: p[:, 0] / 0 * 0, 10, 100)


@pytest.mark.cuda
def test_sampler_on_cuda():
    points, d = importance_samples(sphere, 10_000, 100_000, seed=0, device="cuda")
    assert points.is_cuda and torch.allclose(d, sphere(points))


def test_surface_samples_are_on_the_surface_and_area_uniform():
    box = trimesh.creation.box(extents=(4.0, 1.0, 1.0))  # faces of area 4 (x4) and 1 (x2)
    p = surface_samples(box, 60_000, seed=0, space="world")
    on_face = np.isclose(np.abs(p), [2.0, 0.5, 0.5], atol=1e-9)
    assert on_face.any(axis=1).all()  # every point on some face
    share_end_caps = on_face[:, 0].mean()  # the two 1x1 faces: 2 / 18 of the area
    assert abs(share_end_caps - 2 / 18) < 4 * np.sqrt((2 / 18) * (16 / 18) / len(p))
    unit = surface_samples(box, 1000, seed=0)
    assert 0.85 < np.linalg.norm(unit, axis=1).max() <= 0.9 + 1e-12  # normalised frame: bounding radius 0.9
    assert np.array_equal(unit, surface_samples(box, 1000, seed=0))


def test_impossible_weights_are_refused():
    far = lambda p: torch.full((len(p),), 50.0)  # noqa: E731 - every point 50 away from the surface
    with pytest.raises(ValueError, match="zero"):
        importance_samples(far, 10, 1000, beta=60.0, seed=0)
    with pytest.raises(ValueError, match="finite"):
        importance_samples(far, 10, 1000, beta=float("inf"), seed=0)
