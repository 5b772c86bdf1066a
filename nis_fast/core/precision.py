"""Matmul operand precisions, one vocabulary: the fused kernels' names, and the longer names
FitConfig uses for the same choices. Products always accumulate in float32."""
from __future__ import annotations

import torch

KERNEL_PRECISIONS = ("fp32", "tf32x3", "tf32", "fp16", "bf16")

# FitConfig.precision -> the kernels' name for it.
TRAINING_PRECISIONS = {"float32": "fp32", "tf32x3": "tf32x3", "tf32": "tf32", "float16": "fp16", "bfloat16": "bf16"}


def training_kernel_precision(precision: str, device) -> str:
    """The kernels' precision for a FitConfig precision on `device`. float32 on a GPU with tf32 tensor
    cores (sm_80 and newer) runs as tf32x3, three tf32 products per product: float32 accuracy (inside the
    kernels' fp32 bounds) at tensor-core speed, where IEEE fp32 runs on the FMA units."""
    device = torch.device(device)
    if precision == "float32" and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return "tf32x3"
    return TRAINING_PRECISIONS[precision]
