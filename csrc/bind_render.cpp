// Bindings of the decoding ops: sphere-traced rendering, batched network
// evaluation (value and gradient), marching cubes over a set of cells (three passes).
// nis_fast/decode.py validates everything before calling these.
#include <pybind11/stl.h>

#include <array>

#include "bind_util.h"
#include "nis/decode_ops.h"

namespace nis {

namespace {
using Float3 = std::array<float, 3>;
Vec3f vec(const Float3& a) { return make_vec3(a[0], a[1], a[2]); }
McGrid grid(std::uintptr_t values, std::uintptr_t node_keys, int64_t n_nodes, int64_t ny, int64_t nz, float level) {
    return McGrid{ptr<const float>(values), ptr<const int64_t>(node_keys), n_nodes, ny, nz, level};
}
}  // namespace

void bind_render(py::module_& m) {
    m.def(
        "render",
        [](const std::string& device, std::uintptr_t params, int width, int height, Float3 eye, Float3 forward,
           Float3 right, Float3 up, float eps, float relaxation, float bound_radius, int max_steps, int mode,
           Float3 light, Float3 albedo, Float3 background, float ambient, int ao_samples, float ao_step,
           float depth_near, float depth_far, std::uintptr_t image, std::uintptr_t depth, std::uintptr_t normal,
           std::uintptr_t hit, std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            const PinholeCamera cam{vec(eye), vec(forward), vec(right), vec(up), width, height};
            const TraceSettings trace{eps, relaxation, bound_radius, max_steps};
            const ShadeSettings shade{mode,    vec(light), vec(albedo), vec(background), ambient,
                                      ao_samples, ao_step,  depth_near,  depth_far};
            const RenderBuffers out{ptr<uint8_t>(image), ptr<float>(depth), ptr<float>(normal), ptr<uint8_t>(hit)};
            py::gil_scoped_release nogil;
            if (cuda) {
                NIS_CUDA_ONLY(cuda::render(ptr<const float>(params), cam, trace, shade, out, ptr<void>(stream)));
            } else {
                cpu::render(ptr<const float>(params), cam, trace, shade, out);
            }
        },
        "Sphere-trace the network's zero level set into the given buffers (any may be 0).", py::arg("device"),
        py::arg("params"), py::arg("width"), py::arg("height"), py::arg("eye"), py::arg("forward"), py::arg("right"),
        py::arg("up"), py::arg("eps"), py::arg("relaxation"), py::arg("bound_radius"), py::arg("max_steps"),
        py::arg("mode"), py::arg("light"), py::arg("albedo"), py::arg("background"), py::arg("ambient"),
        py::arg("ao_samples"), py::arg("ao_step"), py::arg("depth_near"), py::arg("depth_far"), py::arg("image"),
        py::arg("depth"), py::arg("normal"), py::arg("hit"), py::arg("stream"));

    m.def(
        "sdf_points",
        [](const std::string& device, std::uintptr_t params, std::uintptr_t points, int64_t n, std::uintptr_t sdf,
           std::uintptr_t grad, std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            py::gil_scoped_release nogil;
            if (cuda) {
                NIS_CUDA_ONLY(cuda::sdf_points(ptr<const float>(params), ptr<const float>(points), n, ptr<float>(sdf),
                                               ptr<float>(grad), ptr<void>(stream)));
            } else {
                cpu::sdf_points(ptr<const float>(params), ptr<const float>(points), n, ptr<float>(sdf),
                                ptr<float>(grad));
            }
        },
        "Network value (and gradient when grad != 0) at float32 points [n, 3].");

    // Marching cubes in three passes; the grid is (values, node_keys or 0 for a dense grid, n_nodes, ny, nz, level).
    m.def(
        "mc_cell_cases",
        [](const std::string& device, std::uintptr_t values, std::uintptr_t node_keys, int64_t n_nodes, int64_t ny,
           int64_t nz, float level, std::uintptr_t cells, int64_t n, std::uintptr_t cases, std::uintptr_t triangles,
           std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            const McGrid g = grid(values, node_keys, n_nodes, ny, nz, level);
            py::gil_scoped_release nogil;
            if (cuda) {
                NIS_CUDA_ONLY(cuda::mc_cell_cases(g, ptr<const int64_t>(cells), n, ptr<uint8_t>(cases),
                                                  ptr<int64_t>(triangles), ptr<void>(stream)));
            } else {
                cpu::mc_cell_cases(g, ptr<const int64_t>(cells), n, ptr<uint8_t>(cases), ptr<int64_t>(triangles));
            }
        },
        "Marching cubes pass 1: case index (uint8) and triangle count (int64) of each cell (low-corner node key).");

    m.def(
        "mc_cell_edges",
        [](const std::string& device, std::uintptr_t values, std::uintptr_t node_keys, int64_t n_nodes, int64_t ny,
           int64_t nz, float level, std::uintptr_t cells, std::uintptr_t cases, std::uintptr_t first, int64_t n,
           std::uintptr_t edge_keys, std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            const McGrid g = grid(values, node_keys, n_nodes, ny, nz, level);
            py::gil_scoped_release nogil;
            if (cuda) {
                NIS_CUDA_ONLY(cuda::mc_cell_edges(g, ptr<const int64_t>(cells), ptr<const uint8_t>(cases),
                                                  ptr<const int64_t>(first), n, ptr<int64_t>(edge_keys),
                                                  ptr<void>(stream)));
            } else {
                cpu::mc_cell_edges(g, ptr<const int64_t>(cells), ptr<const uint8_t>(cases), ptr<const int64_t>(first),
                                   n, ptr<int64_t>(edge_keys));
            }
        },
        "Marching cubes pass 2: the grid-edge keys of each cell's triangles, from 3 * first[c] (outward winding).");

    m.def(
        "mc_edge_vertices",
        [](const std::string& device, std::uintptr_t values, std::uintptr_t node_keys, int64_t n_nodes, int64_t ny,
           int64_t nz, float level, std::uintptr_t edges, int64_t n, std::uintptr_t vertices, std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            const McGrid g = grid(values, node_keys, n_nodes, ny, nz, level);
            py::gil_scoped_release nogil;
            if (cuda) {
                NIS_CUDA_ONLY(cuda::mc_edge_vertices(g, ptr<const int64_t>(edges), n, ptr<float>(vertices),
                                                     ptr<void>(stream)));
            } else {
                cpu::mc_edge_vertices(g, ptr<const int64_t>(edges), n, ptr<float>(vertices));
            }
        },
        "Marching cubes pass 3: the vertex (grid units) on each welded grid edge.");
}

}  // namespace nis
