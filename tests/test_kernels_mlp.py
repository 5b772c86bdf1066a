"""Fused Triton MLP kernels (forward, loss gradient, input gradient) against the torch autograd
twins in tests/reference.py. Without a GPU they run in Triton's interpreter on CPU tensors
(tests/conftest.py sets TRITON_INTERPRET=1); on a GPU the same tests run compiled on CUDA."""
import importlib
import os

import pytest
import torch
import triton
import triton.language as tl

import reference as ref
from reference import GRAD_TOL, INPUT_GRAD_TOL, SDF_TOL
from nis_fast.kernels import mlp_forward, mlp_forward_and_input_grad, mlp_loss_and_grad
from nis_fast.core.precision import KERNEL_PRECISIONS as PRECISIONS
from nis_fast.kernels._mlp_common import tanh
from nis_fast.core.layout import N_PARAMS, glorot_uniform

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def make_params(seed: int, scale: float = 1.0, shapes: int | None = None) -> torch.Tensor:
    """Glorot weights plus small random biases (zero biases would leave bias gradients untested)."""
    def one(s):
        p = torch.from_numpy(glorot_uniform(s)) + 0.02 * torch.randn(N_PARAMS, generator=torch.Generator().manual_seed(s))
        return p * scale

    p = one(seed) if shapes is None else torch.stack([one(seed + i) for i in range(shapes)])
    return p.float().to(DEVICE)


def make_points(n: int, seed: int, shapes: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    size = (n, 3) if shapes is None else (shapes, n, 3)
    return (torch.rand(size, generator=g) * 2 - 1).to(DEVICE)


def to64(*ts):
    return [t.detach().cpu().double() for t in ts]


def rel_err(a, b) -> float:
    a, b = to64(a, b)
    return float((a - b).norm() / b.norm())


# --- forward -------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "tf32x3", "tf32", "fp16", "bf16"])
def test_forward_matches_reference(precision):
    params, x = make_params(1), make_points(1000, 2)  # 1000 rows: not a multiple of the block
    sdf = mlp_forward(params, x, precision=precision, block=64)
    expected = ref._mlp_forward(*to64(params, x))
    assert sdf.shape == (1000,) and sdf.dtype == torch.float32
    err = (to64(sdf)[0] - expected).abs().max().item()
    assert err < SDF_TOL[precision], f"{precision}: max error {err}"
    assert expected.abs().max() > 0.02  # the network is not trivially zero


def test_forward_many_shapes():
    params, x = make_params(3, shapes=3), make_points(333, 4, shapes=3)
    sdf = mlp_forward(params, x, block=64)
    assert sdf.shape == (3, 333)
    expected = ref._mlp_forward(*to64(params, x))
    assert (to64(sdf)[0] - expected).abs().max() < SDF_TOL["fp32"]
    # each shape uses its own weights: shape 1 alone gives the same values
    assert torch.equal(mlp_forward(params[1].contiguous(), x[1].contiguous(), block=64), sdf[1])


def test_forward_tanh_saturation():
    """Huge weights push the output deep into tanh's flat tails: exact +-1, no inf/nan."""
    params, x = make_params(5, scale=30.0), make_points(300, 6)
    sdf = mlp_forward(params, x, block=64)
    expected = ref._mlp_forward(*to64(params, x))
    assert torch.isfinite(sdf).all()
    assert (expected.abs() == 1.0).float().mean() > 0.5  # really saturated
    assert (to64(sdf)[0] - expected).abs().max() < 1e-6


@triton.jit
def _tanh_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tanh(tl.load(x_ptr + offs, mask=offs < n)), mask=offs < n)


def test_tanh_relative_precision_and_tails():
    """The kernels' tanh keeps its relative precision near 0 (sdf values at the surface are tiny)
    and returns exactly +-1, never nan, far out."""
    x = torch.cat([torch.logspace(-30, 2, 400), torch.tensor([0.0, 0.0999, 0.1, 0.1001, 9.0, 1e4, 3e38])])
    x = torch.cat([x, -x]).to(DEVICE)
    y = torch.empty_like(x)
    _tanh_kernel[(triton.cdiv(len(x), 256),)](x, y, len(x), BLOCK=256)
    expected = torch.tanh(x.double().cpu())
    err = (y.double().cpu() - expected).abs()
    assert (err <= 4e-7 * expected.abs()).all(), f"worst relative error {(err / expected.abs()).nan_to_num().max()}"
    assert (y.abs()[x.abs() > 9.0] == 1.0).all()


def test_forward_empty_and_single_row():
    params = make_params(9)
    assert mlp_forward(params, torch.zeros((0, 3), device=DEVICE)).shape == (0,)
    x = make_points(1, 10)
    assert torch.allclose(to64(mlp_forward(params, x))[0], ref._mlp_forward(*to64(params, x)), atol=1e-6)


# --- loss and parameter gradient ---------------------------------------------------------------
@pytest.mark.parametrize("precision,reduce", [("fp32", "partials"), ("fp32", "atomic"), ("tf32x3", "partials"),
                                              ("tf32", "partials"), ("fp16", "partials"), ("bf16", "atomic")])
def test_loss_and_grad_matches_autograd(precision, reduce):
    params, x = make_params(11), make_points(700, 12)
    target = torch.rand(700, generator=torch.Generator().manual_seed(13)).to(DEVICE) * 0.4 - 0.2
    loss, grad = mlp_loss_and_grad(params, x, target, precision=precision, reduce=reduce, block=64)
    loss_ref, grad_ref = ref._mlp_loss_and_grad(*to64(params, x, target))
    assert loss.shape == () and grad.shape == (N_PARAMS,) and grad.is_contiguous()
    assert abs(loss.item() - loss_ref.item()) < SDF_TOL[precision]
    assert rel_err(grad, grad_ref) < GRAD_TOL[precision]
    if precision == "fp32":  # every layer's weights and biases, not just the bulk
        assert (to64(grad)[0] - grad_ref).abs().max() < 1e-6 * grad_ref.abs().max()


def test_loss_and_grad_same_for_any_program_count():
    """Each program walks several row blocks and sums them in registers: 1, 2 or 8 programs (and
    atomics) must all give the single-pass answer."""
    params, x = make_params(24), make_points(500, 25)
    target = torch.zeros(500, device=DEVICE)
    loss1, grad1 = mlp_loss_and_grad(params, x, target, block=64, programs=1)
    for programs, reduce in ((2, "partials"), (8, "partials"), (3, "atomic")):
        loss, grad = mlp_loss_and_grad(params, x, target, block=64, programs=programs, reduce=reduce)
        assert abs(loss.item() - loss1.item()) < 1e-7
        assert (grad - grad1).abs().max() < 1e-6 * grad1.abs().max()


def test_loss_and_grad_many_shapes():
    params, x = make_params(14, shapes=3), make_points(300, 15, shapes=3)
    target = torch.rand((3, 300), generator=torch.Generator().manual_seed(16)).to(DEVICE) * 0.2
    loss, grad = mlp_loss_and_grad(params, x, target, block=64)
    loss_ref, grad_ref = ref._mlp_loss_and_grad(*to64(params, x, target))
    assert loss.shape == (3,) and grad.shape == (3, N_PARAMS)
    assert (to64(loss)[0] - loss_ref).abs().max() < 1e-6
    for s in range(3):
        assert rel_err(grad[s], grad_ref[s]) < GRAD_TOL["fp32"]


def test_loss_and_grad_saturated_tanh():
    """Saturated outputs pass no gradient (1 - tanh^2 = 0 exactly) and produce no nan."""
    params, x = make_params(17, scale=30.0), make_points(200, 18)
    target = torch.zeros(200, device=DEVICE)
    loss, grad = mlp_loss_and_grad(params, x, target, block=64)
    loss_ref, grad_ref = ref._mlp_loss_and_grad(*to64(params, x, target))
    assert torch.isfinite(grad).all()
    assert abs(loss.item() - loss_ref.item()) < 1e-6
    assert (to64(grad)[0] - grad_ref).abs().max() <= 1e-5 * max(grad_ref.abs().max().item(), 1.0)


# --- input gradient (normals) --------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_input_grad_matches_autograd(precision):
    params, x = make_params(19), make_points(500, 20)
    sdf, grad_x = mlp_forward_and_input_grad(params, x, precision=precision, block=64)
    sdf_ref, grad_ref = ref._mlp_forward_and_input_grad(*to64(params, x))
    assert grad_x.shape == (500, 3)
    assert (to64(sdf)[0] - sdf_ref).abs().max() < SDF_TOL[precision]
    per_point = (to64(grad_x)[0] - grad_ref).norm(dim=1) / grad_ref.norm(dim=1)
    assert per_point.median() < INPUT_GRAD_TOL[precision]
    if precision == "fp32":
        assert (to64(grad_x)[0] - grad_ref).abs().max() < 1e-6 * grad_ref.abs().max()


def test_input_grad_many_shapes():
    params, x = make_params(21, shapes=3), make_points(130, 22, shapes=3)
    sdf, grad_x = mlp_forward_and_input_grad(params, x, block=64)
    sdf_ref, grad_ref = ref._mlp_forward_and_input_grad(*to64(params, x))
    assert sdf.shape == (3, 130) and grad_x.shape == (3, 130, 3)
    assert (to64(grad_x)[0] - grad_ref).abs().max() < 1e-6 * grad_ref.abs().max()


# --- bad input -------------------------------------------------------------------------------------
def test_bad_inputs_get_clear_errors(monkeypatch):
    params, x = make_params(23), make_points(10, 24)
    with pytest.raises(TypeError, match="float32"):
        mlp_forward(params.double(), x)
    with pytest.raises(ValueError, match="contiguous"):
        mlp_forward(params, make_points(10, 24).t().contiguous().t())
    with pytest.raises(ValueError, match="last dimension must be 7553"):
        mlp_forward(params[:-1].contiguous(), x)
    with pytest.raises(ValueError, match=r"params \[S, 7553\] with x \[S, N, 3\]"):
        mlp_forward(params, x[None])
    with pytest.raises(ValueError, match="2 shapes but x has 1"):
        mlp_forward(torch.stack([params, params]), x[None])
    with pytest.raises(ValueError, match="precision must be one of"):
        mlp_forward(params, x, precision="fp8")
    with pytest.raises(ValueError, match="target shape"):
        mlp_loss_and_grad(params, x, torch.zeros(11, device=DEVICE))
    with pytest.raises(ValueError, match="empty batch"):
        mlp_loss_and_grad(params, x[:0], torch.zeros(0, device=DEVICE))
    with pytest.raises(ValueError, match="reduce must be"):
        mlp_loss_and_grad(params, x, torch.zeros(10, device=DEVICE), reduce="tree")
    with pytest.raises(ValueError, match="programs must be >= 1"):
        mlp_loss_and_grad(params, x, torch.zeros(10, device=DEVICE), programs=0)
    with pytest.raises(ValueError, match="block must be a power of two"):
        mlp_forward(params, x, block=48)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="Triton kernels need a CUDA device or TRITON_INTERPRET=1"):
            mlp_forward(params, x)


def test_every_precision_has_a_gpu_launch_config():
    for name in ("mlp_forward", "mlp_train", "mlp_input_grad"):
        module = importlib.import_module(f"nis_fast.kernels.{name}")
        assert set(module.GPU_CONFIGS) == set(PRECISIONS), name


def test_latency_bound_batches_take_the_small_block_config(monkeypatch):
    """Up to LATENCY_BOUND_BLOCKS 16-row blocks a program (132 SMs: 8 x 2048 rows, as one network or
    eight) tf32x3 runs 16 rows on 4 warps; one row more, or a ninth network, and every precision keeps
    its GPU_CONFIGS entry."""
    from nis_fast.kernels import mlp_train

    class OnCuda:
        device = torch.device("cuda")

    props = type("Props", (), {"multi_processor_count": 132})
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    configs = mlp_train.latency_bound_configs(OnCuda(), 2048, 1)
    assert configs["tf32x3"] == (16, 4)
    assert {k: v for k, v in configs.items() if k != "tf32x3"} == {k: v for k, v in mlp_train.GPU_CONFIGS.items()
                                                                    if k != "tf32x3"}
    assert mlp_train.LATENCY_BOUND_BLOCKS == 8
    assert mlp_train.latency_bound_configs(OnCuda(), 8 * 132 * 16, 1)["tf32x3"] == (16, 4)
    assert mlp_train.latency_bound_configs(OnCuda(), 2048, 8)["tf32x3"] == (16, 4)
    assert mlp_train.latency_bound_configs(OnCuda(), 8 * 132 * 16 + 1, 1) == mlp_train.GPU_CONFIGS
    assert mlp_train.latency_bound_configs(OnCuda(), 2048, 9) == mlp_train.GPU_CONFIGS
    assert mlp_train.latency_bound_configs(torch.zeros(4, 3), 2048, 1) is mlp_train.GPU_CONFIGS


def test_warps_override_is_checked_and_changes_nothing_but_the_launch():
    g = torch.Generator().manual_seed(11)
    params = make_params(11)
    x = (torch.rand(300, 3, generator=g) * 2 - 1).to(DEVICE)
    target = x.norm(dim=1) - 0.5
    loss, grad = mlp_loss_and_grad(params, x, target, block=32)
    loss2, grad2 = mlp_loss_and_grad(params, x, target, block=32, warps=2)
    assert torch.allclose(loss, loss2, rtol=1e-6) and torch.allclose(grad, grad2, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="warps must be a power of two"):
        mlp_loss_and_grad(params, x, target, warps=3)
