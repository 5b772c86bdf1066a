"""On a CUDA machine: compile and run every Triton kernel of nis_fast.kernels once per precision and
reduction mode, and compare with the torch autograd twins (float64) in tests/reference.py.

Prints one line per check and a JSON summary (to --out if given); exits 1 if any check fails, 2
without CUDA. Tolerances are the tests' (tests/reference.py). Not a benchmark: it times only
the first call (compile + run) for information.

    python benchmarks/gpu_check_kernels.py [--out check.json]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the plain twins: tests/reference.py
import reference as ref  # noqa: E402
from nis_fast.core.layout import N_PARAMS, glorot_uniform  # noqa: E402
from reference import GRAD_TOL, INPUT_GRAD_TOL, SDF_TOL  # noqa: E402


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check_kernels: no CUDA device here; run it on a GPU machine (the CPU tests cover the interpreter)")
        return 2
    from nis_fast.kernels import adam_step_, adam_update_, mlp_forward, mlp_forward_and_input_grad, mlp_loss_and_grad

    dev = "cuda"
    g = torch.Generator().manual_seed(0)
    S, N = 3, 10_007  # N not a multiple of any block size
    params = torch.stack([torch.from_numpy(glorot_uniform(s)) + 0.02 * torch.randn(N_PARAMS, generator=g)
                          for s in range(S)]).float().to(dev)
    x = (torch.rand(S, N, 3, generator=g) * 2 - 1).to(dev)
    target = (x.norm(dim=2) - 0.5).contiguous()
    p64, x64, t64 = params.double(), x.double(), target.double()
    sdf_ref = ref._mlp_forward(p64, x64)
    loss_ref, grad_ref = ref._mlp_loss_and_grad(p64, x64, t64)
    sdf_ref2, gx_ref = ref._mlp_forward_and_input_grad(p64, x64)

    results = []

    def check(name, fn, errors: dict, limits: dict):
        t0 = time.perf_counter()
        try:
            out = fn()
            torch.cuda.synchronize()
            errs = {k: e(out) for k, e in errors.items()}
            ok = all(errs[k] <= limits[k] for k in errs)
            msg = ", ".join(f"{k} {errs[k]:.2e} (<= {limits[k]:.0e})" for k in errs)
        except Exception as exc:  # report every failure, not only the first
            ok, errs, msg = False, {}, f"{type(exc).__name__}: {exc}"
        dt = time.perf_counter() - t0
        results.append({"check": name, "ok": ok, "errors": errs, "first_call_s": dt, "message": msg})
        print(f"{'PASS' if ok else 'FAIL'}  {name:40s} {dt:6.2f}s  {msg}", flush=True)

    for prec in ("fp32", "tf32x3", "tf32", "fp16", "bf16"):
        check(f"mlp_forward {prec} S={S}", lambda: mlp_forward(params, x, precision=prec),
              {"max_abs": lambda y: float((y.double() - sdf_ref).abs().max())}, {"max_abs": SDF_TOL[prec]})
        check(f"mlp_forward {prec} single", lambda: mlp_forward(params[0], x[0], precision=prec),
              {"max_abs": lambda y: float((y.double() - sdf_ref[0]).abs().max())}, {"max_abs": SDF_TOL[prec]})
        for reduce in ("partials", "atomic"):
            check(f"mlp_loss_and_grad {prec} {reduce}",
                  lambda: mlp_loss_and_grad(params, x, target, precision=prec, reduce=reduce),
                  {"loss": lambda o: float((o[0].double() - loss_ref).abs().max()),
                   "grad_rel": lambda o: max(rel(o[1][s], grad_ref[s]) for s in range(S))},
                  {"loss": SDF_TOL[prec], "grad_rel": GRAD_TOL[prec]})
        check(f"mlp_forward_and_input_grad {prec}", lambda: mlp_forward_and_input_grad(params, x, precision=prec),
              {"sdf": lambda o: float((o[0].double() - sdf_ref2).abs().max()),
               "grad_median_rel": lambda o: float(((o[1].double() - gx_ref).norm(dim=2) / gx_ref.norm(dim=2)).median())},
              {"sdf": SDF_TOL[prec], "grad_median_rel": INPUT_GRAD_TOL[prec]})

    # tanh saturation: huge weights
    big = params[0] * 30
    check("mlp_forward saturated tanh", lambda: mlp_forward(big, x[0]),
          {"max_abs": lambda y: float((y.double() - ref._mlp_forward(big.double(), x64[0])).abs().max())},
          {"max_abs": 1e-6})

    def adam_run():
        p, m, v = params.clone(), torch.zeros_like(params), torch.zeros_like(params)
        pr, mr, vr = p.double().clone(), m.double().clone(), v.double().clone()
        for step in range(1, 6):
            grad = torch.randn(p.shape, generator=g).to(dev) * 10.0 ** (-step)
            adam_step_(p, grad, m, v, step, lr=1e-2)
            ref._adam_step_(pr, grad.double(), mr, vr, step, lr=1e-2)
        return p, pr

    check("adam_step_ (Keras formula)", adam_run,
          {"max_abs": lambda o: float((o[0].double() - o[1]).abs().max() / o[1].abs().max())}, {"max_abs": 1e-6})

    def adam_update_run():  # the stack with one alpha per network, against adam_step_ network by network
        p, m, v = params.clone(), torch.zeros_like(params), torch.zeros_like(params)
        one = [(params[s].clone(), torch.zeros_like(params[s]), torch.zeros_like(params[s])) for s in range(S)]
        lrs = [1e-2, 3e-3, 1e-3][:S]
        for step in range(1, 6):
            grad = torch.randn(p.shape, generator=g).to(dev) * 10.0 ** (-step)
            alpha = torch.tensor([lr * (1 - 0.999 ** step) ** 0.5 / (1 - 0.9 ** step) for lr in lrs], device=dev)
            adam_update_(p, grad, m, v, alpha)
            for s, (ps, ms, vs) in enumerate(one):
                adam_step_(ps, grad[s].contiguous(), ms, vs, step, lr=lrs[s])
        return p, torch.stack([o[0] for o in one])

    check("adam_update_ (alpha per network)", adam_update_run,
          {"max_abs": lambda o: float((o[0] - o[1]).abs().max() / o[1].abs().max())}, {"max_abs": 1e-6})

    failed = [r["check"] for r in results if not r["ok"]]
    print(f"\n{len(results) - len(failed)}/{len(results)} passed on {torch.cuda.get_device_name(0)}"
          + (f"; failed: {failed}" if failed else ""))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "results": results}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
