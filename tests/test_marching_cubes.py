"""Marching cubes (nis_fast/ops/marching_cubes.py, through nis_fast.decode): the native dense extraction against
its twin tests/reference.py `_marching_cubes` (scikit-image's classic, Lorensen, marching cubes), and the
narrow-band (sparse) extraction against the dense one.

Convention matched: skimage.measure.marching_cubes(volume, level, method="lorensen") with its default
gradient_direction="descent": same vertices (one per crossed grid edge, float tolerance), same triangles as
oriented index triples, up to the order of vertices and faces. Those faces wind outwards for an SDF.
"""
import numpy as np
import pytest
from decode_nets import BOX_HALF, BOX_ROTATION, box_net, car_net, random_net
from scipy.spatial import cKDTree

from nis_fast import decode
from nis_fast.ops.native import cuda_available
from reference import _marching_cubes

pytest.importorskip("skimage.measure", reason="scikit-image is the marching-cubes oracle (reference._marching_cubes)")


def canonical_faces(faces):
    """Each triangle rotated so its smallest index comes first (orientation kept), rows sorted."""
    faces = np.asarray(faces)
    first = np.argmin(faces, axis=1)
    rows = np.arange(len(faces))
    out = np.stack([faces[rows, (first + q) % 3] for q in range(3)], axis=1)
    return out[np.lexsort(out.T[::-1])]


def assert_same_mesh(v1, f1, v2, f2, atol=1e-4):
    assert len(v1) == len(v2), f"{len(v1)} vs {len(v2)} vertices"
    assert len(f1) == len(f2), f"{len(f1)} vs {len(f2)} faces"
    dist, match = cKDTree(v2).query(v1)
    assert dist.max() <= atol, f"vertices differ by up to {dist.max()}"
    assert len(np.unique(match)) == len(match), "vertex matching is not one-to-one"
    np.testing.assert_array_equal(canonical_faces(match[f1]), canonical_faces(f2))


def test_every_single_cell_case_matches_skimage():
    """Cells k = 2c of a 2 x 2 x 510 volume take the 254 cases with a surface (bit q of the case <-> corner q of
    the cell in C order: (i, j, k) offsets (q >> 2, (q >> 1) & 1, q & 1)); the cells between them get whatever
    their neighbours make."""
    rng = np.random.default_rng(0)
    vol = np.zeros((2, 2, 2 * 254 + 2), np.float32)
    for c, case in enumerate(range(1, 255)):
        signs = np.array([1.0 if (case >> q) & 1 else -1.0 for q in range(8)]).reshape(2, 2, 2)
        vol[:, :, 2 * c:2 * c + 2] = signs * rng.uniform(0.1, 1.0, (2, 2, 2))
    assert_same_mesh(*decode.marching_cubes(vol), *_marching_cubes(vol))


@pytest.mark.parametrize("shape", [(17, 17, 17), (9, 14, 11)])
def test_dense_matches_skimage_on_smooth_and_noisy_fields(shape):
    rng = np.random.default_rng(1)
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    vol = np.sqrt(x**2 + (1.3 * y) ** 2 + z**2) - 0.6 + 0.15 * rng.standard_normal(shape)  # many ambiguous cells
    vol = vol.astype(np.float32)
    v, f = decode.marching_cubes(vol, 0.05)
    assert len(f) > 100
    assert_same_mesh(v, f, *_marching_cubes(vol, 0.05))


def test_dense_matches_skimage_on_network_grids():
    for params in (random_net(0), box_net()):
        vol = decode.sdf_grid(params, 33)
        assert_same_mesh(*decode.marching_cubes(vol), *_marching_cubes(vol))


def test_faces_point_outwards_and_mesh_is_closed():
    vol = decode.sdf_grid(box_net(), 40)
    v, f = decode.marching_cubes(vol)
    centre = (np.array(vol.shape) - 1) / 2.0
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert ((n * (v[f].mean(axis=1) - centre)).sum(axis=1) > 0).mean() > 0.99
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2), "every edge of a closed surface is shared by exactly two triangles"


def assert_sparse_equals_dense(params, resolution, safety):
    v, f = decode.to_mesh(params, resolution, safety=safety)
    h = 2.0 / (resolution - 1)
    vd, fd = _marching_cubes(decode.sdf_grid(params, resolution))
    assert_same_mesh(v, f, vd * h - 1.0, fd, atol=1e-5)
    return v, f


def test_sparse_equals_dense_on_the_exact_cube():
    v, f = assert_sparse_equals_dense(box_net(), 48, safety=1.5)
    local = v.astype(np.float64) @ BOX_ROTATION.T
    assert np.abs(np.abs(local).max(axis=1) - BOX_HALF).max() < 2.0 / 47  # vertices lie on the cube, within a cell


def test_sparse_equals_dense_on_random_networks():
    for seed in (0, 1):
        assert_sparse_equals_dense(random_net(seed), 40, safety=4.0)


def test_sparse_equals_dense_on_the_paper_car():
    assert_sparse_equals_dense(car_net(), 64, safety=2.0)


def test_band_is_narrow():
    res = 96
    cells = decode.narrow_band_cells(box_net(), res, safety=2.0)
    assert 0 < len(cells) < 0.2 * (res - 1) ** 3
    assert cells.min() >= 0 and cells.max() <= res - 2


def test_narrow_band_keeps_every_crossed_cell():
    params, res = random_net(2), 40
    vol = decode.sdf_grid(params, res)
    corners = np.stack([vol[a:res - 1 + a, b:res - 1 + b, c:res - 1 + c]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    crossed = {tuple(ijk) for ijk in np.argwhere((corners.min(0) < 0) & (corners.max(0) > 0))}
    band = {tuple(ijk) for ijk in decode.narrow_band_cells(params, res, safety=4.0).numpy()}
    assert crossed and crossed <= band


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="resolution"):
        decode.to_mesh(box_net(), 1)
    with pytest.raises(ValueError, match="7553"):
        decode.to_mesh(np.zeros(10, np.float32), 16)
    with pytest.raises(ValueError, match="3D volume"):
        decode.marching_cubes(np.zeros((4, 4), np.float32))


def test_no_surface_gives_an_empty_mesh():
    params = box_net()
    params[-1] = 5.0  # f = tanh(max|x| + 5) > 0 everywhere
    v, f = decode.to_mesh(params, 32)
    assert v.shape == (0, 3) and f.shape == (0, 3)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_cuda_mesh_equals_cpu_mesh():
    import torch

    params = car_net()
    v_cpu, f_cpu = decode.to_mesh(params, 96)
    v_gpu, f_gpu = decode.to_mesh(torch.from_numpy(params).cuda(), 96)
    assert_same_mesh(v_gpu, f_gpu, v_cpu, f_cpu, atol=1e-5)
