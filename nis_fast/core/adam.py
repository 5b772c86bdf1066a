"""Keras' Adam step size, shared by the torch training path and the fused Adam kernel."""
from __future__ import annotations

import math


def adam_step_size(lr: float, step: int, beta1: float, beta2: float) -> float:
    """lr with the bias corrections of both moments folded in (Keras' Adam; step counts from 1)."""
    return lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
