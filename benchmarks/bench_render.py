"""Sphere-traced rendering: frames per second of nis_fast.decode.render against a PyTorch eager sphere tracer of
the same network with the same settings (all active rays batched, compacted every step; normals by autograd;
the same Lambert shading), at 512x512 and 1920x1080, in one run, as ratios.

    python benchmarks/bench_render.py [--quick] [--out path.json] [--device cpu|cuda]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the plain twins: tests/reference.py
from harness import SHARED, parser, report, timeit  # noqa: E402

from nis_fast import decode  # noqa: E402
from nis_fast.ops.native import cuda_available  # noqa: E402
from reference import _sphere_trace, box_network, keras_h5_params  # noqa: E402
from nis_fast.ops.mlp import mlp_forward_torch as forward_torch  # noqa: E402

SIZES = [(512, 512), (1920, 1080)]
SETTINGS = dict(eps=5e-4, relaxation=1.6, max_steps=128)


def benchmark_network():
    path = SHARED / "paper_weights" / "car_1.h5"
    if path.exists():
        return keras_h5_params(path), "paper car_1.h5"
    return box_network(0.45), "analytic cube (paper weights not found)"


def torch_eager_render(params, width, height, camera, device):
    """The peer: the reference tracer in float32 on `device`, autograd normals, Lambert shading, uint8 image."""
    eye, forward, right, up = camera.basis(width, height)
    light = -forward + 0.6 * up / np.linalg.norm(up) - 0.4 * right / np.linalg.norm(right)
    light = torch.tensor(light / np.linalg.norm(light), dtype=torch.float32, device=device)
    o, d = (torch.from_numpy(a).to(device=device, dtype=torch.float32) for a in camera.rays(width, height))
    p = torch.as_tensor(params, dtype=torch.float32, device=device)
    t, hit, _ = _sphere_trace(p, o, d, dtype=torch.float32, **SETTINGS)
    x = (o[hit] + d[hit] * t[hit, None]).requires_grad_(True)
    (g,) = torch.autograd.grad(forward_torch(p, x).sum(), x)
    n = g / g.norm(dim=1, keepdim=True)
    n = torch.where(((n * d[hit]).sum(1) > 0)[:, None], -n, n)
    shade = 0.8 * (0.25 + 0.75 * (n @ light).clamp(min=0))
    image = torch.ones(height * width, 3, device=device)
    image[hit] = shade[:, None].expand(-1, 3)
    return (image * 255 + 0.5).to(torch.uint8).reshape(height, width, 3).cpu().numpy(), hit.reshape(height, width)


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if cuda_available() else "cpu")
    args = ap.parse_args()
    params, net_name = benchmark_network()
    device = args.device
    params_dev = torch.from_numpy(params).to(device) if device == "cuda" else params
    camera = decode.Camera()
    repeats = 1 if args.quick else 5
    rows = []
    for width, height in SIZES:
        ours = timeit(lambda: decode.render(params_dev, width, height, camera, **SETTINGS), warmup=1, repeats=repeats)
        last = {}
        peer = timeit(lambda: last.update(out=torch_eager_render(params, width, height, camera, device)),
                      warmup=0 if device == "cpu" else 1, repeats=repeats)
        # Same work: the two tracers must agree on (nearly) every pixel's hit.
        hit = decode.render_buffers(params_dev, width, height, camera, **SETTINGS).hit
        peer_hit = last["out"][1]
        rows.append({
            "size": f"{width}x{height}", "device": device,
            "nis_fast_fps": 1.0 / ours["p50"], "torch_eager_fps": 1.0 / peer["p50"],
            "speedup": peer["p50"] / ours["p50"],
            "nis_fast_ms_p20_p50_p80": [round(1e3 * ours[k], 2) for k in ("p20", "p50", "p80")],
            "torch_eager_ms_p20_p50_p80": [round(1e3 * peer[k], 2) for k in ("p20", "p50", "p80")],
            "hit_fraction": float(hit.mean()), "hit_agreement": float((hit == peer_hit.cpu().numpy()).mean()),
        })
    report("bench_render", ["size", "device", "nis_fast_fps", "torch_eager_fps", "speedup", "hit_fraction",
                            "hit_agreement"], rows, out=args.out,
           notes=[f"network: {net_name}; default camera; settings {SETTINGS}; lambert shading",
                  f"{repeats} timed repeat(s) after warm-up; fps from the median",
                  "targets (H100, measured only there): 1080p >= 100 fps"])


if __name__ == "__main__":
    main()
