// Bindings of the CPU training step (nis/train_ops.h). nis_fast.ops.mlp checks shapes, dtypes
// and devices before calling these.
#include "bind_util.h"
#include "nis/train_ops.h"

namespace nis {

void bind_train(py::module_& m) {
    m.def(
        "mlp_loss_grad",
        [](std::uintptr_t params, std::uintptr_t x, std::uintptr_t target, int64_t n, std::uintptr_t grad,
           int threads) {
            py::gil_scoped_release nogil;
            return cpu::mlp_loss_grad(ptr<const float>(params), ptr<const float>(x), ptr<const float>(target), n,
                                      ptr<float>(grad), threads);
        },
        "grad [7553] = d/dparams mean |f(x) - target| over x [n, 3]; returns the summed |error| (CPU).");
    m.def(
        "mlp_train_step",
        [](std::uintptr_t loss_params, std::uintptr_t params, std::uintptr_t m1, std::uintptr_t m2,
           std::uintptr_t update_mask, std::uintptr_t x, std::uintptr_t target, std::uintptr_t rows,
           int64_t n_points, int64_t n, double alpha, double beta1, double beta2, double eps, int threads) {
            const cpu::AdamStep adam{static_cast<float>(alpha),        static_cast<float>(beta1),
                                     static_cast<float>(beta2),        static_cast<float>(1.0 - beta1),
                                     static_cast<float>(1.0 - beta2), static_cast<float>(eps)};
            py::gil_scoped_release nogil;
            return cpu::mlp_train_step(ptr<const float>(loss_params), ptr<float>(params), ptr<float>(m1),
                                       ptr<float>(m2), ptr<const float>(update_mask), ptr<const float>(x),
                                       ptr<const float>(target), ptr<const int64_t>(rows), n_points, n, adam,
                                       threads);
        },
        "One step: loss and gradient at loss_params over x [n, 3] (or rows [n] of x [n_points, 3]), then Adam "
        "(step size alpha) on params, m, v with the gradient times update_mask (0: none); returns the summed "
        "|error| (CPU).");
}

}  // namespace nis
