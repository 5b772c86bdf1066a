// Bindings of the decoding ops: sphere-traced rendering, batched network
// evaluation (value and gradient), marching cubes over a set of cells.
// nis_fast/decode.py validates everything before calling these.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>

#include "bind_util.h"
#include "nis/decode_ops.h"

namespace nis {

namespace {
using Float3 = std::array<float, 3>;
Vec3f vec(const Float3& a) { return make_vec3(a[0], a[1], a[2]); }
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

    m.def(
        "marching_cubes_cells",
        [](py::array_t<float, py::array::c_style> values, std::uintptr_t node_keys, int64_t n_nodes,
           py::array_t<int64_t, py::array::c_style> cells, int64_t ny, int64_t nz, float level) {
            McMesh mesh;
            {
                py::gil_scoped_release nogil;
                mesh = cpu::marching_cubes_cells(values.data(), ptr<const int64_t>(node_keys), n_nodes, cells.data(),
                                                 cells.size(), ny, nz, level);
            }
            const auto n_vertices = static_cast<py::ssize_t>(mesh.vertices.size() / 3);
            const auto n_faces = static_cast<py::ssize_t>(mesh.faces.size() / 3);
            py::array_t<float> vertices({n_vertices, py::ssize_t{3}});
            py::array_t<int32_t> faces({n_faces, py::ssize_t{3}});
            std::copy(mesh.vertices.begin(), mesh.vertices.end(), vertices.mutable_data());
            std::copy(mesh.faces.begin(), mesh.faces.end(), faces.mutable_data());
            return py::make_tuple(vertices, faces);
        },
        "Marching cubes over cells (low-corner node keys) of a node grid; node_keys = 0 means a dense grid. "
        "Returns (vertices [V,3] float32 in grid units, faces [F,3] int32), outward winding.");
}

}  // namespace nis
