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
