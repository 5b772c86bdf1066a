"""Compile every Triton kernel of nis_fast.kernels ahead of time for a CUDA architecture, with no GPU:
Triton's own front end, ptxas (bundled with the triton wheel) and cuobjdump give registers, spill
stack and shared memory per kernel x precision at its launch configuration.

This is how the GPU_CONFIGS tables in kernels/*.py were chosen (fewest spills); it checks that the
kernels lower through the real compiler, which the interpreter (TRITON_INTERPRET=1) does not.

    python benchmarks/compile_check_kernels.py [--arch 90] [--precisions fp32,fp16] [--out stats.json]
"""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("compile_check_kernels: unset TRITON_INTERPRET (the interpreter does not compile)")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when unset; 1 is the 3.6 default

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

# the modules (the package re-exports functions of the same names)
adam, mlp_forward, mlp_input_grad, mlp_train = (importlib.import_module(f"nis_fast.kernels.{m}")
                                                for m in ("adam", "mlp_forward", "mlp_input_grad", "mlp_train"))

PTR = "*fp32"


def kernels(precision: str):
    """(name, kernel, signature, constexprs, num_warps) for each kernel at its GPU launch configuration."""
    out = []
    block, warps = mlp_forward.GPU_CONFIGS[precision]
    out.append(("mlp_forward", mlp_forward.mlp_forward_kernel,
                {"params_ptr": PTR, "x_ptr": PTR, "out_ptr": PTR, "N": "i32", "BLOCK": "constexpr",
                 "PRECISION": "constexpr"}, {"BLOCK": block, "PRECISION": precision}, warps))
    train_configs = [("", mlp_train.GPU_CONFIGS[precision])]
    if precision in mlp_train.LATENCY_BOUND_CONFIGS:
        train_configs.append((" small batch", mlp_train.LATENCY_BOUND_CONFIGS[precision]))
    for label, (block, warps) in train_configs:
        for atomic in (False, True):
            out.append((f"mlp_train{' atomic' if atomic else ''}{label}", mlp_train.mlp_train_kernel,
                        {"params_ptr": PTR, "x_ptr": PTR, "target_ptr": PTR, "grad_ptr": PTR, "N": "i32",
                         "inv_n": "fp32", "BLOCK": "constexpr", "PRECISION": "constexpr", "ATOMIC": "constexpr"},
                        {"BLOCK": block, "PRECISION": precision, "ATOMIC": atomic}, warps))
    block, warps = mlp_input_grad.GPU_CONFIGS[precision]
    out.append(("mlp_input_grad", mlp_input_grad.mlp_input_grad_kernel,
                {"params_ptr": PTR, "x_ptr": PTR, "sdf_ptr": PTR, "grad_ptr": PTR, "N": "i32", "BLOCK": "constexpr",
                 "PRECISION": "constexpr"}, {"BLOCK": block, "PRECISION": precision}, warps))
    return out


def resource_usage(cubin: bytes) -> dict:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 (A100) or 90 (H100)")
    ap.add_argument("--precisions", default="fp32,tf32x3,tf32,fp16,bf16")
    ap.add_argument("--out", help="write the statistics as JSON here")
    args = ap.parse_args()
    target = GPUTarget("cuda", args.arch, 32)
    jobs = [(prec, *k) for prec in args.precisions.split(",") for k in kernels(prec)]
    for per_row in (False, True):
        jobs.append(("fp32", f"adam{' (alpha per network)' if per_row else ''}", adam.adam_kernel,
                     {"p_ptr": PTR, "g_ptr": PTR, "m_ptr": PTR, "v_ptr": PTR, "n": "i32", "alpha": "fp32",
                      "alpha_ptr": PTR, "row": "i32", "beta1": "fp32", "beta2": "fp32", "one_minus_beta1": "fp32",
                      "one_minus_beta2": "fp32", "eps": "fp32",
                      "BLOCK": "constexpr", "ALPHA_PER_ROW": "constexpr"},
                     {"BLOCK": adam.BLOCK, "ALPHA_PER_ROW": per_row}, 4))
    rows, failed = [], 0
    for prec, name, fn, signature, constexprs, warps in jobs:
        t0 = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(fn, signature, constexprs), target=target, options={"num_warps": warps})
            usage = resource_usage(compiled.asm["cubin"])
            ptx = compiled.asm["ptx"]
            usage["tensor_cores"] = "wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "none"
        except Exception as exc:  # report every kernel, not only the first failure
            usage, failed = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}, failed + 1
        row = {"arch": f"sm_{args.arch}", "kernel": name, "precision": prec, "block": constexprs["BLOCK"],
               "warps": warps, "compile_s": round(time.perf_counter() - t0, 1), **usage}
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"triton": triton.__version__, "rows": rows}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
