// Declarations of the CPU training step: the network's mean L1 loss over a batch, its gradient
// w.r.t. the flat parameters, and Keras' Adam update, in one call (the CPU twin of the fused
// Triton kernels in kernels/mlp_train.py and kernels/adam.py). Raw pointers and sizes only.
#pragma once
#include <cstdint>

namespace nis {
namespace cpu {

// Keras' Adam with the step size alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t) (core/adam.py).
// 1 - beta comes from the caller, computed in double: 1 - 0.999f is 1.3e-5 away from 0.001.
struct AdamStep {
    float alpha, beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
};

// grad = d/dparams of mean_i |f(x_i) - target_i| over the batch x [n, 3], target [n];
// returns sum_i |f(x_i) - target_i| (float64). The result does not depend on `threads`
// (<= 0: OpenMP's default): the batch is cut into fixed chunks whose gradients are summed in order.
double mlp_loss_grad(const float* params, const float* x, const float* target, int64_t n, float* grad,
                     int threads);

// One training step: the loss and gradient as above, taken at loss_params (the int8-rounded
// weights during quantization-aware training, else params itself), then Adam on params, m, v
// (all [7553]) with the gradient times update_mask (null: all ones). Returns the summed |error|.
// With rows (not null), the batch is rows x[rows[i]], target[rows[i]] (i < n) of arrays of
// n_points rows: an epoch's shuffle is read in place, not copied; an index out of range throws
// std::out_of_range before anything is written.
double mlp_train_step(const float* loss_params, float* params, float* m, float* v, const float* update_mask,
                      const float* x, const float* target, const int64_t* rows, int64_t n_points, int64_t n,
                      AdamStep adam, int threads);

}  // namespace cpu
}  // namespace nis
