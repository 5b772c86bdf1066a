// The single pybind11 module nis_fast._C. Each area registers its ops in its
// own bind_<area>.cpp; this file only lists them.
#include <pybind11/pybind11.h>

namespace nis {
namespace py = pybind11;
void bind_core(py::module_& m);
void bind_mesh(py::module_& m);
void bind_decode(py::module_& m);
void bind_train(py::module_& m);
}  // namespace nis

PYBIND11_MODULE(_C, m) {
    m.doc() = "nis_fast native backend (CPU/OpenMP, optional CUDA); raw pointers in, no torch types.";
    nis::bind_core(m);
    nis::bind_mesh(m);
    nis::bind_decode(m);
    nis::bind_train(m);
}
