"""The fit: Keras' plateau rule, the config, determinism, and short fits that work. (The training step it
runs, TorchLossGrad and adam_step_torch, is tested against its twins in test_mlp.py.)"""
import math

import numpy as np
import pytest
import torch

import nis_fast as nf
from nis_fast.core import layout as network
from nis_fast.fit import FitConfig, _Plateau
from nis_fast.core.normalization import Normalization
from nis_fast.sampling import importance_samples
from reference import _forward

# One thread: tests share a small machine, where two OpenMP threads on 32-wide layers mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = FitConfig(pool_size=100_000, n_samples=40_000, epochs=12, batch_size=1024, lr=4e-3, schedule="cosine", threads=1)


def sphere(p):
    return p.norm(dim=-1) - 0.5


def box(p, half=(0.6, 0.35, 0.25)):
    q = p.abs() - torch.tensor(half, dtype=p.dtype, device=p.device)
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def test_plateau_follows_keras():
    config = FitConfig(plateau_patience=3, plateau_factor=0.5, plateau_min_delta=1e-4)
    plateau, lr, lrs = _Plateau(config), 1.0, []
    # improving, then flat (changes below min_delta do not count), then improving again
    for loss in [1.0, 0.9, 0.8, 0.79995, 0.79995, 0.79995, 0.79995, 0.79995, 0.79995, 0.5]:
        lr = plateau.next_lr(loss, lr)
        lrs.append(lr)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_config_presets_and_validation():
    paper = FitConfig()
    assert (paper.pool_size, paper.n_samples, paper.beta, paper.epochs, paper.batch_size, paper.lr) == \
        (10_000_000, 1_000_000, 60.0, 100, 2048, 1e-3)
    assert (paper.plateau_factor, paper.plateau_patience, paper.adam_eps, paper.schedule) == (0.8, 30, 1e-7, "plateau")
    assert paper.uniform_fraction == 0  # the paper's sampler draws by exp(-beta |d|) alone
    assert FitConfig.paper() == paper and FitConfig.fast() != paper
    with pytest.raises(ValueError, match="uniform_fraction"):
        FitConfig(uniform_fraction=1.0)
    with pytest.raises(ValueError, match="batch_size=0"):
        FitConfig(batch_size=0)
    with pytest.raises(ValueError, match="schedule"):
        FitConfig(schedule="linear")
    with pytest.raises(ValueError, match="precision"):
        FitConfig(precision="int8")
    with pytest.raises(ValueError, match="fused kernels on a CUDA device"):
        nf.fit(sphere, FitConfig(pool_size=1000, n_samples=100, epochs=1, precision="float16"), device="cpu")


def test_same_seed_same_weights_bit_exact():
    config = FitConfig(pool_size=20_000, n_samples=6000, epochs=2, batch_size=1000, lr=1e-3, threads=1)
    a = nf.fit(sphere, config, device="cpu", seed=5, progress=False)
    b = nf.fit(sphere, config, device="cpu", seed=5, progress=False)
    c = nf.fit(sphere, config, device="cpu", seed=6, progress=False)
    assert torch.equal(a.params, b.params)
    assert not torch.equal(a.params, c.params)


@pytest.mark.parametrize("sdf", [sphere, box])
def test_short_fit_reaches_small_error(sdf):
    losses = []
    shape = nf.fit(sdf, TINY, device="cpu", progress=False, callback=lambda e, loss, lr: losses.append((e, loss, lr)))
    assert [e for e, _, _ in losses] == list(range(TINY.epochs))
    assert losses[-1][1] < 0.2 * losses[0][1]
    assert losses[-1][2] == pytest.approx(TINY.lr * TINY.lr_final)
    points, d = importance_samples(sdf, 20_000, 200_000, seed=99)  # fresh points near the surface
    err = (shape.sdf(points, space="unit") - d).abs().mean()
    assert err < 0.006, err
    far = torch.rand(20_000, 3) * 2 - 1
    assert ((shape.sdf(far, space="unit") > 0) == (sdf(far) > 0)).float().mean() > 0.97
    assert shape.metadata["recipe"]["epochs"] == TINY.epochs
    assert math.isfinite(shape.metadata["recipe"]["final_loss"])


def test_sdf_native_evaluation_matches_the_torch_forward():
    """No-grad CPU queries take the native evaluator; with requires_grad, torch: the same values."""
    shape = nf.NeuralSDF(network.glorot_uniform(3), Normalization(np.array([1.0, -2.0, 0.5]), 0.7))
    p = torch.from_numpy(np.random.default_rng(1).uniform(-3, 3, (5000, 3)))
    native = shape.sdf(p)
    torch_path = shape.sdf(p.clone().requires_grad_())
    assert native.dtype == torch_path.dtype and not native.requires_grad and torch_path.requires_grad
    torch.testing.assert_close(native, torch_path.detach(), rtol=1e-5, atol=1e-6)
    unit = shape.sdf(p.float(), space="unit")
    reference = _forward(shape.params, p.float())
    torch.testing.assert_close(unit, reference, rtol=1e-5, atol=1e-6)
    assert shape.sdf(np.zeros((0, 3))).shape == (0,)


def test_world_space_scales_distances(tmp_path):
    config = FitConfig(pool_size=10_000, n_samples=2000, epochs=1, threads=1)
    shape = nf.fit(sphere, config, device="cpu", progress=False)
    shape.transform = Normalization(np.array([10.0, 0.0, 0.0]), 0.5)
    p = np.random.default_rng(0).normal(size=(50, 3))
    unit = shape.sdf((p - [10.0, 0.0, 0.0]) * 0.5, space="unit")
    assert np.allclose(shape.sdf(p), unit / 0.5, rtol=1e-5, atol=1e-6)
    shape.save(tmp_path / "s.nis")
    back = nf.load(tmp_path / "s.nis")
    assert back.metadata["recipe"] == shape.metadata["recipe"]
    assert np.array_equal(back.sdf(p), shape.sdf(p))


def test_fit_many_loops_with_distinct_seeds():
    config = FitConfig(pool_size=10_000, n_samples=2000, epochs=1, batch_size=500, threads=1)
    seen = []
    shapes = nf.fit_many([sphere, box], config, device="cpu", seed=3, progress=False,
                         callback=lambda i, e, loss, lr: seen.append(i))
    assert len(shapes) == 2 and seen == [0, 1]
    assert [s.metadata["recipe"]["seed"] for s in shapes] == [3, 4]


def test_fit_a_real_mesh(tmp_path):
    from conftest import mesh_path

    path = mesh_path("thingi10k_70375.stl")
    mesh = nf.load_mesh(path, warn=False)
    config = FitConfig(pool_size=100_000, n_samples=30_000, epochs=6, batch_size=1024, lr=4e-3, schedule="cosine",
                       threads=1)
    shape = nf.fit(path, config, device="cpu", progress=False)
    assert shape.transform.to_dict() == mesh.transform.to_dict()
    assert shape.metadata["source"]["faces"] == len(mesh.faces) and len(shape.metadata["source"]["sha256"]) == 64
    surface = torch.from_numpy(nf.sampling.surface_samples(mesh, 5000, seed=1).astype(np.float32))
    random = torch.rand(5000, 3) * 2 - 1
    assert shape.sdf(surface, "unit").abs().mean() < 0.2 * shape.sdf(random, "unit").abs().mean()


@pytest.mark.parametrize("quantize_epochs", [0, 1])
def test_stacked_training_with_the_kernels_matches_the_torch_path(monkeypatch, quantize_epochs):
    """fit_many's batched path (the fused kernels on an [S, 7553] stack; here in Triton's interpreter,
    on a GPU compiled and from the second epoch replayed from a CUDA graph): shape s of the stack gets
    the same shuffles as a lone torch-path run with seed s on the same device, so their weights after
    three epochs must agree. The plateau schedule (patience 1, min_delta 1) cuts the lr after the
    second epoch, so the third reads smaller step sizes from its refilled table. With a
    quantization-aware epoch after them, both end on the int8 grid (where rounding may put a weight
    of one path a step from the other's: a few at most)."""
    kernels = pytest.importorskip("nis_fast.kernels")
    if not hasattr(kernels, "mlp_loss_and_grad"):
        pytest.skip("nis_fast.kernels has no mlp_loss_and_grad in this build")
    if not torch.cuda.is_available() and __import__("os").environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not set")
    fit_module = __import__("sys").modules["nis_fast.fit"]
    config = FitConfig(n_samples=1000, pool_size=5000, epochs=3, batch_size=300, lr=3e-3, plateau_patience=1,
                       plateau_min_delta=1.0, quantize_epochs=quantize_epochs)
    sets = [importance_samples(f, 1000, 5000, seed=i) for i, f in enumerate([sphere, box])]
    start = torch.stack([torch.from_numpy(network.glorot_uniform(i)) for i in range(2)])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fused = (kernels.mlp_loss_and_grad, kernels.adam_update_)
    monkeypatch.setattr(fit_module, "_epochs", lambda p, x, t, cfg: fit_module._KernelEpochs(p, x, t, cfg, fused))
    monkeypatch.setattr(fit_module, "training_kernel_precision", lambda precision, device: "fp32")  # not tf32x3 on a GPU
    stacked = start.clone().to(device)
    points, targets = (torch.stack([s[k] for s in sets]).to(device) for k in (0, 1))
    history = fit_module.train(stacked, points, targets, config)
    monkeypatch.setattr(fit_module, "_epochs", lambda p, x, t, cfg: fit_module._TorchEpochs(p, x, t, cfg))
    for s in range(2):  # shape s of the stack is shuffled as a lone run with seed s is
        alone = start[s:s + 1].clone().to(device)
        alone_history = fit_module.train(alone, points[s:s + 1], targets[s:s + 1], config, seed=s)
        assert (~torch.isclose(stacked[s], alone[0], rtol=1e-4, atol=1e-6)).sum() <= (3 if quantize_epochs else 0)
        assert not torch.allclose(stacked[s].cpu(), start[s])
        assert abs(history[-1][s] - alone_history[-1][0]) < 1e-5


def test_render_and_to_mesh_delegate_to_decode(monkeypatch):
    """NeuralSDF hands its parameters to nis_fast.decode and maps the mesh back to world units."""
    import sys
    import types

    calls = {}
    fake = types.ModuleType("nis_fast.decode")

    def to_mesh(params, resolution=256, **kw):
        calls["mesh"] = (params, resolution, kw)
        return np.array([[0.0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]]), np.array([[0, 1, 2]])  # unit frame

    fake.to_mesh = to_mesh
    fake.render = lambda params, width, height, camera=None, **kw: (width, height, kw)
    monkeypatch.setattr(sys.modules["nis_fast.model"], "decode", fake)
    shape = nf.NeuralSDF(torch.zeros(network.N_PARAMS), Normalization(np.array([1.0, 2.0, 3.0]), 0.5))
    mesh = shape.to_mesh(resolution=64, level=0.01)
    assert calls["mesh"][1:] == (64, {"level": 0.01}) and calls["mesh"][0] is shape.params
    assert np.allclose(mesh.vertices, [[1, 2, 3], [2.8, 2, 3], [1, 3.8, 3]]) and mesh.faces.tolist() == [[0, 1, 2]]
    assert shape.render(32, 24, shading="normals") == (32, 24, {"shading": "normals"})


def test_float32_fits_run_the_kernels_as_tf32x3_on_tensor_core_gpus(monkeypatch):
    from nis_fast.core.precision import training_kernel_precision as kernel_precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert kernel_precision("float32", "cuda") == "tf32x3"
    assert [kernel_precision(p, "cuda") for p in ("tf32", "float16", "bfloat16")] == ["tf32", "fp16", "bf16"]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert kernel_precision("float32", "cuda") == "fp32"  # no tf32 before sm_80
    assert kernel_precision("float32", "cpu") == "fp32"


@pytest.mark.cuda
def test_fit_and_fit_many_on_cuda():
    shape = nf.fit(sphere, TINY, device="cuda", progress=False)
    recipe = shape.metadata["recipe"]
    assert shape.params.is_cuda and recipe["backend"] in ("triton", "torch")
    if recipe["backend"] == "triton":
        assert recipe["kernel_precision"] == ("tf32x3" if torch.cuda.get_device_capability()[0] >= 8 else "fp32")
    assert isinstance(shape.sdf(np.zeros((2, 3))), np.ndarray)  # numpy in -> numpy out, from a GPU model
    points, d = importance_samples(sphere, 20_000, 200_000, seed=99, device="cuda")
    assert (shape.sdf(points, space="unit") - d).abs().mean() < 0.006
    shapes = nf.fit_many([sphere, box], TINY, device="cuda", progress=False)
    for s, sdf in zip(shapes, [sphere, box]):
        points, d = importance_samples(sdf, 20_000, 200_000, seed=99, device="cuda")
        assert (s.sdf(points, space="unit") - d).abs().mean() < 0.006


@pytest.mark.cuda
def test_cuda_graph_epochs_train_exactly_as_eager_epochs(monkeypatch):
    """From the second epoch a CUDA fit replays the epoch's launches from a graph: the same kernels on
    the same data in the same order, so the weights and losses are bit-identical to launching them."""
    fit_module = __import__("sys").modules["nis_fast.fit"]
    if fit_module.training_backend("cuda") != "triton":
        pytest.skip("the fused kernels do not import here")
    points, d = importance_samples(sphere, 20_000, 100_000, seed=1, device="cuda")
    made, real_epochs = [], fit_module._epochs

    def recording_epochs(*args):
        made.append(real_epochs(*args))
        return made[-1]

    monkeypatch.setattr(fit_module, "_epochs", recording_epochs)
    runs = []
    for graphs in (False, True):
        config = FitConfig(n_samples=20_000, pool_size=100_000, epochs=4, batch_size=2048, lr=3e-3,
                           cuda_graphs=graphs)
        params = torch.from_numpy(network.glorot_uniform(0)).cuda()[None]
        runs.append((params, fit_module.train(params, points[None], d[None], config)))
    assert made[0].graph is None and made[1].graph is not None
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


@pytest.mark.cuda
def test_a_refused_cuda_graph_capture_falls_back_to_launches(monkeypatch):
    """Where the capture fails (here: refused at once, leaving its stream current as torch does when
    ending a capture fails), the fit warns, restores the caller's stream and trains as without graphs."""
    fit_module = __import__("sys").modules["nis_fast.fit"]
    if fit_module.training_backend("cuda") != "triton":
        pytest.skip("the fused kernels do not import here")
    points, d = importance_samples(sphere, 20_000, 100_000, seed=1, device="cuda")

    class RefusedCapture:
        def __init__(self, graph, stream=None, **kwargs):
            self.stream = stream

        def __enter__(self):
            torch.cuda.set_stream(self.stream)
            raise RuntimeError("operation not permitted when stream is capturing")

        def __exit__(self, *exc):
            return False

    results = []
    for graphs in (False, True):
        config = FitConfig(n_samples=20_000, pool_size=100_000, epochs=3, batch_size=2048, lr=3e-3,
                           cuda_graphs=graphs)
        params = torch.from_numpy(network.glorot_uniform(0)).cuda()[None]
        caller = torch.cuda.current_stream()
        if graphs:
            monkeypatch.setattr(torch.cuda, "graph", RefusedCapture)
            with pytest.warns(RuntimeWarning, match="CUDA graph failed"):
                history = fit_module.train(params, points[None], d[None], config)
        else:
            history = fit_module.train(params, points[None], d[None], config)
        assert torch.cuda.current_stream() == caller
        results.append((params, history))
    assert torch.equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]


def test_world_queries_far_from_the_origin_keep_float32_detail():
    params = torch.from_numpy(network.glorot_uniform(seed=4))
    far = nf.NeuralSDF(params, Normalization(np.array([1e6, -2e6, 3e6]), 1.0))
    unit = np.random.default_rng(0).uniform(-0.5, 0.5, size=(1000, 3))
    world = unit + far.transform.center
    np.testing.assert_allclose(far.sdf(world), far.sdf(unit.astype(np.float32), space="unit"), atol=1e-6)


def test_quantization_aware_epochs_end_on_the_int8_grid_and_beat_rounding(tmp_path):
    """A fit with quantize_epochs ends with weights an int8 file holds exactly (the save loses nothing), and
    its L1 loss on the training samples is below that of the same fit's float weights rounded afterwards;
    the bias-only epochs after the quantization-aware ones leave every weight where they found it."""
    import importlib

    from nis_fast.core.quantize import dequantize, quantize

    fit_module = importlib.import_module("nis_fast.fit")
    config = FitConfig(n_samples=20_000, pool_size=50_000, epochs=6, batch_size=512, lr=3e-3, schedule="cosine",
                       threads=1)
    points, targets = importance_samples(box, config.n_samples, config.pool_size, seed=2)
    start = torch.from_numpy(network.glorot_uniform(2))[None]
    plain, aware = start.clone(), start.clone()
    fit_module.train(plain, points[None], targets[None], config)
    history = fit_module.train(aware, points[None], targets[None],
                               FitConfig(**{**config.to_dict(), "quantize_epochs": 3}))
    assert len(history) == 6 + 3 + 2  # the schedule, quantization-aware epochs, bias-only epochs
    assert np.array_equal(dequantize(quantize(aware[0].numpy())), aware[0].numpy())
    shape = nf.NeuralSDF(aware[0])
    shape.save(tmp_path / "q.nis", dtype="int8")
    assert torch.equal(nf.load(tmp_path / "q.nis").params, shape.params)
    rounded = torch.from_numpy(dequantize(quantize(plain[0].numpy())))

    def loss(p):
        return float((_forward(p.double(), points.double()) - targets.double()).abs().mean())

    assert loss(aware[0]) < loss(rounded)
    # Fine-tuning alone: no schedule epochs, the weights given are rounded-aware trained and end on the grid.
    tuned = plain.clone()
    fit_module.train(tuned, points[None], targets[None], FitConfig(**{**config.to_dict(), "epochs": 0,
                                                                      "quantize_epochs": 2}))
    assert np.array_equal(dequantize(quantize(tuned[0].numpy())), tuned[0].numpy())
    assert loss(tuned[0]) < loss(rounded)
    no_bias_epochs = plain.clone()
    fit_module.train(no_bias_epochs, points[None], targets[None], FitConfig(**{
        **config.to_dict(), "epochs": 0, "quantize_epochs": 2, "quantize_bias_epochs": 0}))
    is_bias = torch.from_numpy(network.is_bias())
    assert torch.equal(tuned[0][~is_bias], no_bias_epochs[0][~is_bias])
    assert not torch.equal(tuned[0][is_bias], no_bias_epochs[0][is_bias])
    with pytest.raises(ValueError, match="epochs=0"):
        FitConfig(epochs=0)
