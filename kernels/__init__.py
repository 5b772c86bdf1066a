"""Fused Triton kernels for the 7553-parameter SDF network (installed as nis_fast.kernels).

One kernel per file, its formula in the module docstring, an autograd-free functional launcher:

    mlp_forward(params, x, precision="fp32")                 -> sdf
    mlp_loss_and_grad(params, x, target, precision="fp32")   -> (mean L1 loss, d loss / d params)
    adam_step_(params, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-7)   in place, Keras' Adam
    adam_update_(params, grad, m, v, alpha, beta1=0.9, beta2=0.999, eps=1e-7)    the same, alpha from a tensor
    mlp_forward_and_input_grad(params, x)                    -> (sdf, d sdf / d x)

params [7553] with x [N, 3] (target [N]), or S networks at once: params [S, 7553] with x [S, N, 3]
(target [S, N]). All float32, contiguous, on a CUDA device (or CPU under TRITON_INTERPRET=1).
Plain PyTorch twins: tests/reference.py (section "MLP references").
"""
from .adam import adam_step_, adam_update_
from .mlp_forward import mlp_forward
from .mlp_input_grad import mlp_forward_and_input_grad
from .mlp_train import mlp_loss_and_grad

__all__ = ["mlp_forward", "mlp_loss_and_grad", "adam_step_", "adam_update_", "mlp_forward_and_input_grad"]
