"""On a CUDA machine: time the fused loss-and-gradient kernel (kernels/mlp_train.py) over launch
configurations (rows per block x warps) at several batch sizes and stack sizes, to choose GPU_CONFIGS
and LATENCY_BOUND_CONFIGS by measurement.

GPU time per launch comes from replaying a CUDA graph of launches (no host overhead in it); each
configuration's gradient is checked against the kernel's default configuration. A table on stdout and
JSON (harness.report); exits 2 without CUDA.

    python benchmarks/tune_mlp_train.py [--precisions tf32x3,fp16] [--batches 2048,16384,1048576] [--shapes 1,4]
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import parser, report  # noqa: E402

from nis_fast.core.layout import N_PARAMS, glorot_uniform  # noqa: E402

CONFIGS = [(16, 2), (16, 4), (16, 8), (32, 4), (32, 8), (64, 8)]


def graph_time_us(fn, launches: int = 20, replays: int = 10) -> float:
    """GPU time of one fn() call: fn recorded `launches` times in a CUDA graph, replayed `replays` times."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # compile and warm up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(launches):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(replays):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (replays * launches) * 1e6


def main() -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--precisions", default="tf32x3")
    ap.add_argument("--batches", default="2048,16384,1048576")
    ap.add_argument("--shapes", default="1,4")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("tune_mlp_train: no CUDA device here; run it on a GPU machine")
        return 2
    from nis_fast.kernels import mlp_loss_and_grad
    from nis_fast.kernels.mlp_train import GPU_CONFIGS, latency_bound_configs

    rows = []
    for shapes in (int(s) for s in args.shapes.split(",")):
        params = torch.stack([torch.from_numpy(glorot_uniform(s)) for s in range(shapes)]).float().cuda()
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.rand(shapes, batch, 3, device="cuda") * 2 - 1
            target = (x.norm(dim=2) - 0.5).contiguous()
            for precision in args.precisions.split(","):
                default = latency_bound_configs(x, batch, shapes)[precision]
                reference = mlp_loss_and_grad(params, x, target, precision=precision)[1]
                launches = 20 if batch * shapes <= 65536 else 3
                for block, warps in CONFIGS:
                    def launch(block=block, warps=warps):
                        return mlp_loss_and_grad(params, x, target, precision=precision, block=block, warps=warps)[1]
                    try:
                        us = graph_time_us(launch, launches)
                        grad = launch()
                        err = float((grad - reference).norm() / reference.norm())
                    except Exception as exc:  # a configuration the compiler refuses (shared memory, registers)
                        print(f"{precision} batch {batch} x{shapes} ({block}, {warps}): {type(exc).__name__}: {exc}")
                        continue
                    rows.append({"precision": precision, "batch": batch, "shapes": shapes, "block": block,
                                 "warps": warps, "us_per_launch": us,
                                 "samples_per_s": batch * shapes / us * 1e6, "grad_rel_diff": err,
                                 "in_use": (block, warps) == default,
                                 "gpu_configs": (block, warps) == GPU_CONFIGS[precision]})
                    print(rows[-1], flush=True)
    report("tune_mlp_train", ["precision", "batch", "shapes", "block", "warps", "us_per_launch", "samples_per_s",
                              "grad_rel_diff", "in_use", "gpu_configs"], rows, out=args.out,
           notes=["GPU time per launch from CUDA-graph replays (20 launches a graph, 3 above 65536 rows; 10 replays)",
                  "in_use: the configuration mlp_loss_and_grad picks for this batch (latency_bound_configs)"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
