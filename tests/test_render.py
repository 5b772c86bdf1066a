"""Sphere tracing against the plain references of tests/reference.py: the PyTorch sphere tracer
(`_render`) and the closed-form cube of `box_network` (`ray_box_reference`); shading, odd sizes, errors
and CUDA against the CPU. The network evaluation itself (`eval_sdf`) is tested in test_mlp.py."""
import numpy as np
import pytest
import torch
from decode_nets import BOX_HALF, BOX_ROTATION, box_net, car_net, points, random_net

from nis_fast import decode
from nis_fast.ops.native import cuda_available, native
from reference import ray_box_reference, _render

W, H = 32, 24
CAM = decode.Camera.orbit(35.0, 25.0)
TRACE = dict(eps=1e-4, relaxation=1.6, max_steps=200)


def test_render_of_the_cube_matches_closed_form():
    w, h = 64, 48
    b = decode.render_buffers(box_net(), w, h, CAM, **TRACE)
    o, d = CAM.rays(w, h)
    t, n, cos = ray_box_reference(o, d, BOX_HALF, BOX_ROTATION)
    hit = np.isfinite(t).reshape(h, w)
    assert 0.1 < hit.mean() < 0.9
    # Rays that graze an edge within eps may differ; there are few of them.
    assert (b.hit != hit).sum() <= 0.01 * w * h
    both = (b.hit & hit).reshape(-1) & (cos > 0.2)
    # Traced hits stop where the L-inf distance is below eps: a little before the face.
    depth_err = t[both] - b.depth.reshape(-1)[both]
    assert depth_err.min() > -1e-4 and depth_err.max() < 2e-3
    normal_err = np.abs(b.normals.reshape(-1, 3)[both] - n[both]).max(axis=1)
    assert np.mean(normal_err < 1e-4) > 0.97  # all but points whose L-inf ball reaches an edge


@pytest.mark.parametrize("make", [lambda: random_net(0), lambda: random_net(1), box_net, car_net])
def test_render_matches_the_pytorch_tracer(make):
    params = make()
    b = decode.render_buffers(params, W, H, CAM, **TRACE)
    depth, normals, hit = _render(params, W, H, CAM, **TRACE)
    assert hit.any()
    # float32 vs float64 tracing of a non-smooth network: a ray may switch between hit and miss at a silhouette.
    assert (b.hit != hit).sum() <= max(2, 0.01 * W * H)
    both = b.hit & hit
    close = np.abs(b.depth[both] - depth[both]) < 1e-3
    assert close.mean() > 0.97, "depths differ"
    cos = (b.normals * normals).sum(axis=-1)[both][close]
    assert np.mean(cos > 1 - 1e-4) > 0.97, "normals differ"
    assert np.all(np.isinf(b.depth[~b.hit])) and np.all(b.normals[~b.hit] == 0)


def test_shading_modes_follow_the_buffers():
    params = car_net()
    b = decode.render_buffers(params, W, H, CAM, background=(10, 20, 30))
    assert np.all(b.image[~b.hit] == (10, 20, 30))
    normals_img = decode.render(params, W, H, CAM, shading="normals")
    expected = np.clip(b.normals * 0.5 + 0.5, 0, 1) * 255 + 0.5
    assert np.abs(normals_img[b.hit].astype(int) - expected[b.hit].astype(int)).max() <= 1
    depth_img = decode.render(params, W, H, CAM, shading="depth")[..., 0].astype(int)
    order = np.argsort(b.depth[b.hit])
    assert np.all(np.diff(depth_img[b.hit][order]) <= 1), "depth shading must darken with distance"
    lit = b.image[b.hit].astype(int)
    assert lit.min() >= int(0.25 * 0.8 * 255) - 1 and lit.max() <= int(0.8 * 255) + 1
    with_ao = decode.render(params, W, H, CAM, ao_samples=4)
    assert np.all(with_ao[b.hit] <= b.image[b.hit]) and np.any(with_ao[b.hit] < b.image[b.hit])


def test_miss_everywhere_and_odd_sizes():
    params = box_net()
    params[-1] = 5.0  # positive everywhere: nothing to hit
    b = decode.render_buffers(params, 7, 3)
    assert not b.hit.any() and np.all(b.image == 255)
    away = decode.Camera(eye=(3.0, 0, 0), target=(6.0, 0, 0))  # looking away from the shape
    assert not decode.render_buffers(box_net(), 5, 5, away).hit.any()


def test_bad_inputs_raise_clear_errors():
    params = box_net()
    with pytest.raises(ValueError, match="7553"):
        decode.render(params[:-1], 8, 8)
    with pytest.raises(ValueError, match="shading"):
        decode.render(params, 8, 8, shading="phong")
    with pytest.raises(ValueError, match="width and height"):
        decode.render(params, 0, 8)
    with pytest.raises(ValueError, match="background"):
        decode.render(params, 8, 8, background=(300, 0, 0))
    with pytest.raises(ValueError, match="parallel"):
        decode.render(params, 8, 8, decode.Camera(eye=(0, 3, 0), up=(0, 1, 0)))
    with pytest.raises(ValueError, match="shape"):
        decode.eval_sdf(params, np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError):
        decode.eval_sdf(params, [[0.0, 0.0, 0.0]])
    bad = params.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        decode.render(bad, 8, 8)


@pytest.mark.skipif(cuda_available(), reason="checks the error raised where there is no GPU")
def test_cuda_without_a_gpu_raises_a_clear_error():
    params, x = box_net(), points(4)
    out = np.empty(4, np.float32)
    with pytest.raises(RuntimeError, match="CUDA"):
        native.sdf_points("cuda", params.ctypes.data, x.ctypes.data, 4, out.ctypes.data, 0, 0)
    image = np.empty((2, 2, 3), np.uint8)
    eye, forward, right, up = decode.Camera().basis(2, 2)
    cam = native.PinholeCamera(eye=eye, forward=forward, right=right, up=up, width=2, height=2)
    trace = native.TraceSettings(eps=1e-3, relaxation=1.6, bound_radius=1.0, max_steps=8)
    shade = native.ShadeSettings(mode=0, light=(0, 0, 1), albedo=(1, 1, 1), background=(0, 0, 0), ambient=0.2,
                                 ao_samples=0, ao_step=0.02, depth_near=1.0, depth_far=3.0)
    with pytest.raises(RuntimeError, match="CUDA"):
        native.render("cuda", params.ctypes.data, cam, trace, shade, image.ctypes.data, 0, 0, 0, 0)
    cells, counts = np.zeros(1, np.int64), np.empty(1, np.int64)
    with pytest.raises(RuntimeError, match="CUDA"):
        native.mc_cell_cases("cuda", out.ctypes.data, 0, 4, 2, 2, 0.0, cells.ctypes.data, 1, image.ctypes.data,
                             counts.ctypes.data, 0)
    with pytest.raises(RuntimeError, match="CUDA"):
        decode.render(params, 4, 4, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        decode.to_mesh(params, 8, device="cuda")


def test_save_png_round_trip(tmp_path):
    from PIL import Image

    image = decode.render(car_net(), 20, 10)
    path = tmp_path / "car.png"
    decode.save_png(image, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert [p.name for p in tmp_path.iterdir()] == ["car.png"]
    with pytest.raises(ValueError, match="uint8"):
        decode.save_png(image.astype(np.float32), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("make", [lambda: random_net(0), box_net, car_net])
def test_cuda_render_matches_cpu(make):
    params = make()
    cpu = decode.render_buffers(params, 160, 120, CAM)
    gpu = decode.render_buffers(torch.from_numpy(params).cuda(), 160, 120, CAM)
    assert (cpu.hit != gpu.hit).mean() < 0.002
    both = cpu.hit & gpu.hit
    assert np.mean(np.abs(cpu.depth - gpu.depth)[both] < 1e-3) > 0.99
    assert np.mean(np.abs(cpu.image.astype(int) - gpu.image.astype(int)).max(axis=-1) <= 2) > 0.99


