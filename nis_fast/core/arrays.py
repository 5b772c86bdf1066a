"""Arrays in, pointers out: which device a numpy array or torch tensor lives on, its raw address,
and torch's current CUDA stream: what the native ops and the Triton launchers take."""
from __future__ import annotations

import numpy as np
import torch


def device_of(x) -> str:
    """'cpu' or 'cuda' for a numpy array or torch tensor; anything else is a TypeError."""
    if isinstance(x, np.ndarray):
        return "cpu"
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
    return torch.cuda.current_stream().cuda_stream
