"""Geometric metrics (Chamfer, Hausdorff, normal consistency, IoU) on the paper's released network:
good where the network is right, measurably worse when the frame is off by 5 %."""
import numpy as np
import pytest

import nis_fast as nf
from nis_fast import metrics
from nis_fast.core.normalization import Normalization
from tests.conftest import PAPER_WEIGHTS, mesh_path


@pytest.fixture(scope="module")
def octocat():
    weights = PAPER_WEIGHTS / "thingi10k_32770_sf.h5"
    if not weights.exists():
        pytest.skip(f"{weights} not found")
    return nf.load(weights), nf.load_mesh(mesh_path("thingi10k_32770.stl"), warn=False)


def test_metrics_of_the_released_network(octocat):
    shape, mesh = octocat
    chamfer, hausdorff = metrics.chamfer_hausdorff(shape, mesh, n=20_000, resolution=96)
    # The released network has small floaters away from the surface: Hausdorff sees them, Chamfer hardly.
    assert 1e-4 < chamfer < 0.015 and chamfer / 2 < hausdorff < 0.25
    assert 0.8 < metrics.normal_consistency(shape, mesh, n=20_000) <= 1.0
    assert 0.9 < metrics.iou(shape, mesh, n=200_000) < 1.0


def test_metrics_see_a_wrong_frame(octocat):
    shape, mesh = octocat
    wrong = nf.load_mesh(mesh_path("thingi10k_32770.stl"), warn=False)
    wrong.transform = Normalization(mesh.transform.center, mesh.transform.scale * 1.05)
    good = metrics.chamfer_hausdorff(shape, mesh, n=20_000, resolution=96)[0]
    assert metrics.chamfer_hausdorff(shape, wrong, n=20_000, resolution=96)[0] > 2 * good
    assert metrics.iou(shape, wrong, n=200_000) < metrics.iou(shape, mesh, n=200_000) - 0.02


def test_iou_of_a_shape_with_itself_is_one():
    box = nf.load_mesh(mesh_path("fandisk.obj"), warn=False)
    exact = nf.MeshSDF(box, space="unit")

    class Exact:  # the exact SDF as a 'shape': inside agrees with the winding number everywhere
        device = "cpu"

        def sdf(self, points, space="unit"):
            return exact.sdf(points)

    assert metrics.iou(Exact(), box, n=100_000) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(metrics.iou(Exact(), box, n=1000))


def test_sign_agreement_of_the_exact_sdf_and_of_its_negation():
    mesh = nf.load_mesh(mesh_path("fandisk.obj"), warn=False)
    exact = nf.MeshSDF(mesh, space="unit")

    class Exact:
        device = "cpu"
        flip = 1.0

        def sdf(self, points, space="unit"):
            return self.flip * exact.sdf(points)

    shape = Exact()
    assert metrics.sign_agreement(shape, mesh, n=20_000, pool_size=200_000) == 1.0
    shape.flip = -1.0
    assert metrics.sign_agreement(shape, mesh, n=20_000, pool_size=200_000) == 0.0


def test_compare_surfaces_on_known_pairs():
    """A sphere against itself, against a concentric sphere 0.05 larger, and a square against the same square
    tilted by 30 degrees: Chamfer, Hausdorff and normal consistency as geometry says."""
    import trimesh

    from nis_fast.core.normalization import IDENTITY
    from nis_fast.mesh import Mesh

    ball = trimesh.creation.icosphere(5, radius=0.5)
    ref = Mesh(np.asarray(ball.vertices), np.asarray(ball.faces, np.int32), IDENTITY, "ball")
    same = metrics.compare_surfaces(ref, ref, n=20_000)
    assert same["chamfer"] < 2e-3 and same["normal_consistency"] > 0.999
    bigger = Mesh(np.asarray(ball.vertices) * 1.1, np.asarray(ball.faces, np.int32), IDENTITY, "bigger")
    found = metrics.compare_surfaces(ref, bigger, n=20_000)
    assert found["chamfer"] == pytest.approx(0.1, rel=0.03) and found["hausdorff"] == pytest.approx(0.05, rel=0.05)
    assert found["normal_consistency"] > 0.999
    square = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    tilted = square @ np.array([[1, 0, 0], [0, c, s], [0, -s, c]]).T
    found = metrics.compare_surfaces(Mesh(square, faces, IDENTITY, "a"), Mesh(tilted, faces, IDENTITY, "b"), n=5000)
    assert found["normal_consistency"] == pytest.approx(c, abs=1e-9)
