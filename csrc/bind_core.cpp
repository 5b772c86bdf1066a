// Bindings for build/runtime information and the per-pair triangle op.
#include <omp.h>

#include "bind_util.h"
#include "nis/triangle_ops.h"

namespace nis {

void bind_core(py::module_& m) {
    m.def("build_info", [] {
        py::dict d;
        d["cxx_flags"] = NIS_CXX_FLAGS;
        d["cuda_built"] =
#if defined(NIS_WITH_CUDA)
            true;
#else
            false;
#endif
        d["cuda_note"] = NIS_CUDA_BUILD_NOTE;
        d["openmp"] = _OPENMP;
        return d;
    });

    m.def("cuda_status", [] {
        const CudaStatus s = cuda_status();
        py::dict d;
        d["built"] = s.built;
        d["available"] = s.available;
        d["device_count"] = s.device_count;
        d["reason"] = s.reason;
        d["device_name"] = s.device_name;
        d["compute_capability"] = py::make_tuple(s.cc_major, s.cc_minor);
        return d;
    });

    m.def("cpu_threads", [] { return omp_get_max_threads(); });
    m.def("set_cpu_threads", [](int n) { omp_set_num_threads(n); });

    m.def(
        "closest_point_triangles",
        [](const std::string& device, const std::string& dtype, std::uintptr_t points, std::uintptr_t triangles,
           int64_t n, std::uintptr_t out_points, std::uintptr_t out_bary, std::uintptr_t out_region,
           std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            dispatch_float(dtype, [&](auto tag) {
                using T = decltype(tag);
                py::gil_scoped_release nogil;
                if (cuda) {
                    NIS_CUDA_ONLY(cuda::closest_point_triangles(ptr<const T>(points), ptr<const T>(triangles), n,
                                                                ptr<T>(out_points), ptr<T>(out_bary),
                                                                ptr<int32_t>(out_region), ptr<void>(stream)));
                } else {
                    cpu::closest_point_triangles(ptr<const T>(points), ptr<const T>(triangles), n, ptr<T>(out_points),
                                                 ptr<T>(out_bary), ptr<int32_t>(out_region));
                }
            });
        },
        "Closest point of points[i] on triangles[i] ([n,3], [n,3,3]); writes points, barycentrics, region ids.");
}

}  // namespace nis
