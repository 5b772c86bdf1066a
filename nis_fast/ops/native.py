"""The native module nis_fast._C, loaded once (after checking that this CPU runs its
instructions), and what was built and what runs here (`backend_info`).

The op wrappers beside this module take numpy arrays or torch tensors, look once at where
they live (nis_fast.core.arrays.device_of) and call the CPU or CUDA entry of `native`.
"""
from __future__ import annotations

import functools
import os

import torch

from ..core import __version__
from ..core.arrays import device_of


def missing_cpu_flags(required, cpuinfo: str = "/proc/cpuinfo") -> list:
    """The flags of `required` that this CPU lacks, by /proc/cpuinfo ([] where that cannot tell)."""
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.startswith("flags")), None)
    except OSError:
        return []
    if line is None:
        return []
    have = set(line.split(":", 1)[1].split())
    return [flag for flag in required if flag not in have]


def check_cpu(arch: str, required, cpuinfo: str = "/proc/cpuinfo") -> None:
    """Raise ImportError if this CPU lacks an instruction set the native module was compiled to use."""
    missing = missing_cpu_flags(required, cpuinfo)
    if missing:
        raise ImportError(
            f"nis_fast: the native module was compiled with -march={arch} for another CPU, and this one lacks "
            f"{' '.join(missing)}: reinstall nis_fast on this machine, or build a portable module with "
            "NIS_FAST_CPU_ARCH=x86-64-v2 (see the README)")


def _check_this_cpu() -> None:
    try:
        from .._cpu_build import CPU_ARCH, CPU_FLAGS
    except ImportError:  # not built by setup.py: no record to check against
        return
    check_cpu(CPU_ARCH, CPU_FLAGS)


# Before the module loads: its code may use any of those instructions from the first call on.
_check_this_cpu()
from .. import _C  # noqa: E402

native = _C
# OpenMP's thread count before anything here changes it: a CPU fit sets torch's (which is also this
# module's: they share the OpenMP runtime) to 1 for its few torch ops, and trains on these many.
DEFAULT_CPU_THREADS = _C.cpu_threads()


@functools.lru_cache(maxsize=None)
def cuda_status() -> dict:
    """Native CUDA status: built or not, usable or not and why (cached: devices do not change)."""
    return dict(_C.cuda_status())


def cuda_available() -> bool:
    """True when both the native CUDA backend and torch can use a GPU."""
    if not cuda_status()["available"]:
        return False
    return torch.cuda.is_available()


def require_cuda() -> None:
    """A clear error where CUDA is asked for but this machine or build cannot run it."""
    if not cuda_available():
        raise RuntimeError(f"nis_fast: CUDA was asked for, but it is not available here ({cuda_status()['reason']})")


def resolve_device(x, device) -> str:
    """'cpu' or 'cuda': `device` if given, else where x lives; a clear error when CUDA is asked for but absent."""
    name = device_of(x) if device is None else str(device)
    if name.startswith("cuda"):
        require_cuda()
        return "cuda"
    if name == "cpu":
        return "cpu"
    raise ValueError(f"nis_fast: device must be 'cpu' or 'cuda', got {device!r}")


def triton_info() -> dict:
    """Triton version and mode: 'compiled' on a CUDA GPU, 'interpreted' under TRITON_INTERPRET=1."""
    try:
        import triton
    except ImportError:
        return {"version": None, "mode": "unavailable (triton not installed)"}
    if os.environ.get("TRITON_INTERPRET") == "1":
        mode = "interpreted (TRITON_INTERPRET=1)"
    else:
        mode = "compiled" if torch.cuda.is_available() else "unavailable (no CUDA device; set TRITON_INTERPRET=1 to interpret)"
    return {"version": triton.__version__, "mode": mode}


def backend_info() -> dict:
    """What was built into nis_fast._C and what can run on this machine."""
    build = dict(_C.build_info())
    status = cuda_status()
    if status["available"]:
        major, minor = status["compute_capability"]
        cuda = f"{status['device_name']} (sm_{major}{minor}, {status['device_count']} device(s))"
    else:
        cuda = f"not available ({status['reason']})"
    return {
        "version": __version__,
        "native": {
            "cxx_flags": build["cxx_flags"],
            "openmp": build["openmp"],
            "cuda_built": build["cuda_built"],
            "cuda_archs" if build["cuda_built"] else "cuda_not_built_because": build["cuda_note"],
        },
        "cpu_threads": _C.cpu_threads(),
        "cuda": cuda,
        "torch": f"{torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'not available'})",
        "triton": triton_info(),
    }
