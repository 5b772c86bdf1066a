"""MLP throughput: the fused Triton kernels (nis_fast.kernels) against PyTorch eager (nn.Sequential)
and torch.compile of the same network, in one run, as samples per second and ratios to eager.

Three workloads: forward (points -> sdf), forward+backward (mean L1 loss and its parameter gradient)
and a full training step (forward+backward+Adam), at batch 2048 (the paper's) and larger; plus S
networks trained at once (params [S, 7553]) against eager torch doing the same with batched matmuls.

The CPU rows race the native CPU training step (csrc/cpu/train.cpp: forward, loss, backward and Adam in
one call) against the two PyTorch paths a CPU fit could take, TorchLossGrad + adam_step_torch (the
reference path of nis_fast.fit) and eager autograd + torch.optim.Adam, at 1 and 2 threads each.

Next to each figure: the ceiling implied by counting on an H100 (flops per sample / peak flops,
bytes per sample / 3.35 TB/s). On a machine without CUDA only the eager PyTorch path is timed, and the
output says so: interpreted Triton (TRITON_INTERPRET=1) is a correctness tool, not a benchmark.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import parser, report, timeit  # noqa: E402

from nis_fast.core.adam import adam_step_size  # noqa: E402
from nis_fast.core.layout import LAYER_SIZES, N_PARAMS, OFFSETS, glorot_uniform, unflatten  # noqa: E402
from nis_fast.ops.mlp import TorchLossGrad, adam_step_torch, loss_grad_cpu, train_step_cpu  # noqa: E402

# Counting (per sample): a Dense layer fan_in -> fan_out costs 2 * fan_in * fan_out flops forward;
# backward costs twice that (input gradient + weight gradient). Bytes: 12 in (xyz) + 4 out (sdf or target).
FWD_FLOPS = sum(2 * i * o for i, o in LAYER_SIZES)  # 15 040, ~ 2 * 7553
TRAIN_FLOPS = 3 * FWD_FLOPS
SAMPLE_BYTES = 16
ADAM_BYTES = 7 * 4 * N_PARAMS  # per step and network: read p, g, m, v; write p, m, v
# H100 SXM dense peaks (tf32x3 = three tf32 products per product)
H100 = {"fp32": 67e12, "tf32x3": 494e12 / 3, "tf32": 494e12, "fp16": 989e12, "bf16": 989e12, "bandwidth": 3.35e12}


def ceilings(flops: float, bytes_: float, precision: str) -> dict:
    """Samples/s an H100 could not beat: limited by its peak flops or by its memory bandwidth."""
    return {"h100_flop_ceiling": H100[precision] / flops, "h100_byte_ceiling": H100["bandwidth"] / bytes_}


def sequential(params: torch.Tensor) -> torch.nn.Sequential:
    """The same network as nn.Sequential (Linear stores W^T: weight [fan_out, fan_in])."""
    layers = []
    for k, (w, b) in enumerate(unflatten(params)):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(w.t())
            lin.bias.copy_(b)
        layers += [lin, torch.nn.Tanh() if k == len(LAYER_SIZES) - 1 else torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).to(params.device)


def torch_step_fns(model, x, target, compiled: bool):
    """forward, forward+backward, train-step closures for an nn.Module (eager or torch.compile)."""
    net = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def forward():
        with torch.no_grad():
            return net(x)

    def fwd_bwd():
        opt.zero_grad(set_to_none=True)
        loss = (net(x)[:, 0] - target).abs().mean()
        loss.backward()
        return loss

    def train_step():
        fwd_bwd()
        opt.step()

    return {"forward": forward, "fwd+bwd": fwd_bwd, "train step": train_step}


def batched_eager_fns(params, x, target):
    """S networks at once in eager torch: the layers as batched matmuls (torch.baddbmm), autograd, Adam."""
    p = params.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=1e-3, eps=1e-7)

    def loss_fn():
        h = x
        for k, ((fan_in, fan_out), (w0, b0)) in enumerate(zip(LAYER_SIZES, OFFSETS)):
            w = p[:, w0:w0 + fan_in * fan_out].reshape(-1, fan_in, fan_out)
            h = torch.baddbmm(p[:, b0:b0 + fan_out].unsqueeze(1), h, w)
            h = torch.tanh(h) if k == len(LAYER_SIZES) - 1 else torch.relu(h)
        return (h[..., 0] - target).abs().mean(dim=1).sum()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    return train_step


def triton_fns(params, x, target, precision, reduce="partials"):
    from nis_fast.kernels import adam_step_, mlp_forward, mlp_loss_and_grad

    p = params.clone()
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    state = {"step": 0}

    def train_step():
        _, grad = mlp_loss_and_grad(p, x, target, precision=precision, reduce=reduce)
        state["step"] += 1
        adam_step_(p, grad, m, v, state["step"], lr=1e-3)

    return {"forward": lambda: mlp_forward(p, x, precision=precision),
            "fwd+bwd": lambda: mlp_loss_and_grad(p, x, target, precision=precision, reduce=reduce),
            "train step": train_step}


def cpu_fns(params, x, target, threads):
    """The CPU training paths at `threads` threads: native, TorchLossGrad + adam_step_torch, eager autograd."""
    p, m, v = params.clone(), torch.zeros_like(params), torch.zeros_like(params)
    state = {"step": 0}
    manual = TorchLossGrad(len(x), "cpu")

    def native_step():
        state["step"] += 1
        train_step_cpu(p, m, v, x, target, alpha=adam_step_size(1e-3, state["step"], 0.9, 0.999), beta1=0.9,
                       beta2=0.999, eps=1e-7, threads=threads)

    def manual_step():
        state["step"] += 1
        _, grad = manual(p, x, target)
        adam_step_torch(p, grad, m, v, state["step"], 1e-3, 0.9, 0.999, 1e-7)

    eager = torch_step_fns(sequential(params), x, target, compiled=False)
    return [(f"native, {threads} thr", {"fwd+bwd": lambda: loss_grad_cpu(p, x, target, threads=threads),
                                         "train step": native_step}),
            (f"TorchLossGrad, {threads} thr", {"fwd+bwd": lambda: manual(p, x, target), "train step": manual_step}),
            (f"torch eager, {threads} thr", {k: eager[k] for k in ("fwd+bwd", "train step")})]


def cpu_rows(batches, thread_counts, repeats):
    """Training-step rows on the CPU; vs_eager is against TorchLossGrad at one thread (fit's old path)."""
    params = torch.from_numpy(glorot_uniform(0))
    rows = []
    before = torch.get_num_threads()
    for batch in batches:
        x = torch.rand(batch, 3) * 2 - 1
        target = x.norm(dim=1) - 0.5
        for op in ("fwd+bwd", "train step"):
            base = None
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for impl, fns in cpu_fns(params, x, target, threads):
                    t = timeit(fns[op], warmup=3, repeats=repeats)
                    if impl.startswith("TorchLossGrad") and threads == thread_counts[0]:
                        base = t["p50"]
                    rows.append({**row(op, "cpu " + impl, "fp32", batch, 1, t, None),
                                 "h100_flop_ceiling": None, "h100_byte_ceiling": None})
                    print(f"{op:10s} cpu {impl:22s} batch {batch:6d}: {rows[-1]['samples_per_s']:.3g} samples/s",
                          flush=True)
            for r in rows:
                if r["op"] == op and r["batch"] == batch and r["impl"].startswith("cpu"):
                    r["vs_eager"] = base / r["p50_ms"] * 1e3
    torch.set_num_threads(before)
    return rows


def row(op, impl, precision, batch, shapes, timing, eager_p50=None):
    samples = batch * shapes
    flops = FWD_FLOPS if op == "forward" else TRAIN_FLOPS
    bytes_ = SAMPLE_BYTES + (ADAM_BYTES * shapes / samples if op == "train step" else 0)
    r = {"op": op, "impl": impl, "precision": precision, "batch": batch, "shapes": shapes, "p50_ms": timing["p50"] * 1e3,
         "samples_per_s": samples / timing["p50"], "vs_eager": eager_p50 / timing["p50"] if eager_p50 else None}
    r.update(ceilings(flops, bytes_, precision if impl.startswith("triton") else "fp32"))
    return r


def main():
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--batches", default="2048,262144", help="comma-separated batch sizes (CPU: those <= 65536)")
    ap.add_argument("--shapes", type=int, default=16, help="networks trained at once in the many-shapes rows")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compile takes a while)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); on a busy CPU, 2 threads "
                    "spinning against other processes can be far slower than 1")
    ap.add_argument("--cpu-batches", default="2048,16384", help="batch sizes of the CPU training-step rows")
    ap.add_argument("--cpu-threads", default="1,2", help="thread counts of the CPU training-step rows")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    batches = [int(b) for b in args.batches.split(",")]
    if args.quick:
        batches = batches[:1] if cuda else [2048]
    elif not cuda:
        batches = [b for b in batches if b <= 65536]
    repeats = 5 if args.quick else 20
    notes = []
    if not cuda:
        notes.append("no CUDA device: only PyTorch eager is timed; the Triton kernels are not (interpreted Triton is a "
                     "correctness tool, not a benchmark) and torch.compile is skipped")
    notes.append(f"torch CPU threads: {torch.get_num_threads()}")
    notes.append("h100_*_ceiling: samples/s an H100 cannot exceed (peak dense flops for the precision: fp32 67, tf32x3 165, "
                 "tf32 494, fp16/bf16 989 TFLOPS; or 3.35 TB/s over bytes per sample), from counting, not measured")
    torch.manual_seed(0)
    params = torch.from_numpy(glorot_uniform(0)).to(device)
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, device=device) * 2 - 1
        target = x.norm(dim=1) - 0.5
        eager = torch_step_fns(sequential(params), x, target, compiled=False)
        impls = [("torch eager", "fp32", eager)]
        if cuda and not args.no_compile:
            impls.append(("torch.compile", "fp32", torch_step_fns(sequential(params), x, target, compiled=True)))
        if cuda:
            impls += [("triton", prec, triton_fns(params, x, target, prec))
                      for prec in ("fp32", "tf32x3", "tf32", "fp16", "bf16")]
            # the other cross-program gradient reduction (atomics instead of per-program partials + sum)
            impls += [("triton atomic", prec, triton_fns(params, x, target, prec, "atomic")) for prec in ("fp32", "fp16")]
        for op in ("forward", "fwd+bwd", "train step"):
            eager_p50 = None
            for impl, prec, fns in impls:
                if op == "forward" and impl == "triton atomic":
                    continue  # the same kernel as "triton"
                t = timeit(fns[op], warmup=3, repeats=repeats)
                eager_p50 = eager_p50 or t["p50"]
                rows.append(row(op, impl, prec, batch, 1, t, eager_p50))
                print(f"{op:10s} {impl:13s} {prec:4s} batch {batch:8d}: {rows[-1]['samples_per_s']:.3g} samples/s",
                      flush=True)
    cpu_batches = [int(b) for b in args.cpu_batches.split(",")][:1 if args.quick else None]
    rows += cpu_rows(cpu_batches, [int(t) for t in args.cpu_threads.split(",")], repeats)
    notes.append("cpu rows: vs_eager is the speed-up over TorchLossGrad + adam_step_torch at the first thread count "
                 "(the PyTorch path of a CPU fit)")
    # S networks at once: one launch over a [S, 7553] stack against batched eager torch
    batch = 2048 if (args.quick or not cuda) else 65536
    S = args.shapes
    ps = params.expand(S, N_PARAMS).contiguous()
    xs = torch.rand(S, batch, 3, device=device) * 2 - 1
    ts = xs.norm(dim=2) - 0.5
    t_eager = timeit(batched_eager_fns(ps, xs, ts), warmup=3, repeats=repeats)
    rows.append(row("train step", "torch eager (bmm)", "fp32", batch, S, t_eager, t_eager["p50"]))
    if cuda:
        for prec in ("fp32", "fp16"):
            t = timeit(triton_fns(ps, xs, ts, prec)["train step"], warmup=3, repeats=repeats)
            rows.append(row("train step", "triton", prec, batch, S, t, t_eager["p50"]))
    cols = ["op", "impl", "precision", "batch", "shapes", "p50_ms", "samples_per_s", "vs_eager", "h100_flop_ceiling",
            "h100_byte_ceiling"]
    report("bench_mlp", cols, rows, out=args.out, notes=notes,
           extra={"counting": {"forward_flops_per_sample": FWD_FLOPS, "train_flops_per_sample": TRAIN_FLOPS,
                               "bytes_per_sample": SAMPLE_BYTES, "adam_bytes_per_step": ADAM_BYTES,
                               "h100_peaks": H100},
                  "targets_h100": {"forward_samples_per_s": 1e10, "train_samples_per_s": 3e9}})


if __name__ == "__main__":
    main()
