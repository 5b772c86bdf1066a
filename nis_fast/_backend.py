"""The one backend layer: loads the native module, says what runs here, and
turns numpy arrays / torch tensors into the raw pointers the native ops take.

Dispatch happens here, once: public functions call `device_of`, then pick the
CUDA, Triton or CPU path; nothing below this layer looks at array types again.
"""
from __future__ import annotations

import functools
import os

import numpy as np


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
        from ._cpu_build import CPU_ARCH, CPU_FLAGS
    except ImportError:  # not built by setup.py: no record to check against
        return
    check_cpu(CPU_ARCH, CPU_FLAGS)


# Before the module loads: its code may use any of those instructions from the first call on.
_check_this_cpu()
from . import _C  # noqa: E402

native = _C


@functools.lru_cache(maxsize=None)
def cuda_status() -> dict:
    """Native CUDA status: built or not, usable or not and why (cached: devices do not change)."""
    return dict(_C.cuda_status())


def cuda_available() -> bool:
    """True when both the native CUDA backend and torch can use a GPU."""
    if not cuda_status()["available"]:
        return False
    import torch

    return torch.cuda.is_available()


def triton_info() -> dict:
    """Triton version and mode: 'compiled' on a CUDA GPU, 'interpreted' under TRITON_INTERPRET=1."""
    try:
        import triton
    except ImportError:
        return {"version": None, "mode": "unavailable (triton not installed)"}
    if os.environ.get("TRITON_INTERPRET") == "1":
        mode = "interpreted (TRITON_INTERPRET=1)"
    else:
        import torch

        mode = "compiled" if torch.cuda.is_available() else "unavailable (no CUDA device; set TRITON_INTERPRET=1 to interpret)"
    return {"version": triton.__version__, "mode": mode}


def backend_info() -> dict:
    """What was built into nis_fast._C and what can run on this machine."""
    import torch

    build = dict(_C.build_info())
    status = cuda_status()
    if status["available"]:
        major, minor = status["compute_capability"]
        cuda = f"{status['device_name']} (sm_{major}{minor}, {status['device_count']} device(s))"
    else:
        cuda = f"not available ({status['reason']})"
    return {
        "version": __import__("nis_fast").__version__,
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


def device_of(x) -> str:
    """'cpu' or 'cuda' for a numpy array or torch tensor; anything else is a TypeError."""
    if isinstance(x, np.ndarray):
        return "cpu"
    import torch

    if isinstance(x, torch.Tensor):
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"nis_fast: tensors on device '{x.device}' are not supported (use cpu or cuda)")
        if x.device.type == "cuda":
            require_current_device(x)
        return x.device.type
    raise TypeError(f"nis_fast: expected a numpy array or a torch tensor, got {type(x).__name__}")


def require_current_device(t) -> None:
    """Native and Triton launches run on torch's current CUDA device and stream: a tensor on another
    GPU would be read through the wrong context, so it is refused with the way out."""
    import torch

    if t.device.index is not None and t.device.index != torch.cuda.current_device():
        raise ValueError(f"nis_fast: a tensor on {t.device} while the current CUDA device is "
                         f"cuda:{torch.cuda.current_device()}; run under `with torch.cuda.device({t.device.index}):`")


def data_ptr(x) -> int:
    """Address of a C-contiguous numpy array or torch tensor."""
    contiguous = x.flags.c_contiguous if isinstance(x, np.ndarray) else x.is_contiguous()
    if not contiguous:  # callers make inputs contiguous; this guards the native code against a missed case
        raise ValueError("nis_fast: internal error: a non-contiguous array reached the native code")
    return x.ctypes.data if isinstance(x, np.ndarray) else x.data_ptr()


def stream_ptr(device: str) -> int:
    """The current CUDA stream of torch as an integer handle (0 on the CPU)."""
    if device != "cuda":
        return 0
    import torch

    return torch.cuda.current_stream().cuda_stream
