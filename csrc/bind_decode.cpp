// Bindings of the decoding ops: sphere-traced rendering (its camera and settings as classes),
// batched network evaluation (value and gradient), marching cubes over a set of cells (three
// passes), and the network's flat layout. nis_fast validates everything before calling these.
#include <pybind11/stl.h>

#include <array>
#include <set>
#include <tuple>
#include <vector>

#include "bind_util.h"
#include "nis/decode_ops.h"

namespace nis {

namespace {
using Float3 = std::array<float, 3>;
McGrid grid(std::uintptr_t values, std::uintptr_t node_keys, int64_t n_nodes, int64_t ny, int64_t nz, float level) {
    return McGrid{ptr<const float>(values), ptr<const int64_t>(node_keys), n_nodes, ny, nz, level};
}

// A plain struct of trace.h bound as a class: every field is a keyword argument of the
// constructor, all required (a forgotten or misspelt field is an error, not a zero), and
// readable and writable afterwards. Vec3f fields read and write as 3 floats.
template <typename S>
class SettingsClass {
   public:
    // Module-local: plain data of this module only, never shared with another pybind11 module.
    SettingsClass(py::module_& m, const char* name, const char* doc) : cls_(m, name, doc, py::module_local()) {}

    template <typename V>
    SettingsClass& field(const char* name, V S::*member) {
        cls_.def_readwrite(name, member);
        names_.push_back(name);
        return *this;
    }
    SettingsClass& field(const char* name, Vec3f S::*member) {
        cls_.def_property(
            name, [member](const S& s) { return Float3{(s.*member).x, (s.*member).y, (s.*member).z}; },
            [member](S& s, const Float3& v) { s.*member = make_vec3(v[0], v[1], v[2]); });
        names_.push_back(name);
        return *this;
    }
    // Adds the keyword constructor once every field is declared.
    void done() {
        const std::vector<std::string> names = names_;
        const std::string type = py::str(cls_.attr("__name__"));
        cls_.def(py::init([names, type](py::kwargs kwargs) {
            const std::set<std::string> expected(names.begin(), names.end());
            std::set<std::string> given;
            for (const auto& item : kwargs) {
                const std::string key = py::str(item.first);
                if (!expected.count(key)) throw py::type_error(type + ": unknown field '" + key + "'");
                given.insert(key);
            }
            for (const std::string& name : names)
                if (!given.count(name)) throw py::type_error(type + ": missing field '" + name + "'");
            py::object self = py::cast(S{});
            for (const auto& item : kwargs) py::setattr(self, item.first, item.second);
            return self.cast<S>();
        }));
    }

   private:
    py::class_<S> cls_;
    std::vector<std::string> names_;
};
}  // namespace

void bind_decode(py::module_& m) {
    SettingsClass<PinholeCamera>(m, "PinholeCamera",
                                 "Pixel (px, py) (row py from the top) looks along forward + u * right + v * up, "
                                 "u, v in [-1, 1] (right and up already scaled by the field of view).")
        .field("eye", &PinholeCamera::eye)
        .field("forward", &PinholeCamera::forward)
        .field("right", &PinholeCamera::right)
        .field("up", &PinholeCamera::up)
        .field("width", &PinholeCamera::width)
        .field("height", &PinholeCamera::height)
        .done();
    SettingsClass<TraceSettings>(m, "TraceSettings", "Sphere tracing: see nis/trace.h.")
        .field("eps", &TraceSettings::eps)
        .field("relaxation", &TraceSettings::relaxation)
        .field("bound_radius", &TraceSettings::bound_radius)
        .field("max_steps", &TraceSettings::max_steps)
        .done();
    SettingsClass<ShadeSettings>(m, "ShadeSettings", "Shading of a pixel: see nis/trace.h (mode: 0 lambert, 1 normals, 2 depth).")
        .field("mode", &ShadeSettings::mode)
        .field("light", &ShadeSettings::light)
        .field("albedo", &ShadeSettings::albedo)
        .field("background", &ShadeSettings::background)
        .field("ambient", &ShadeSettings::ambient)
        .field("ao_samples", &ShadeSettings::ao_samples)
        .field("ao_step", &ShadeSettings::ao_step)
        .field("depth_near", &ShadeSettings::depth_near)
        .field("depth_far", &ShadeSettings::depth_far)
        .done();

    m.def(
        "render",
        [](const std::string& device, std::uintptr_t params, const PinholeCamera& camera, const TraceSettings& trace,
           const ShadeSettings& shade, std::uintptr_t image, std::uintptr_t depth, std::uintptr_t normal,
           std::uintptr_t hit, std::uintptr_t stream) {
            const bool cuda = is_cuda(device);
            const RenderBuffers out{ptr<uint8_t>(image), ptr<float>(depth), ptr<float>(normal), ptr<uint8_t>(hit)};
            py::gil_scoped_release nogil;
            if (cuda) {
                NIS_CUDA_ONLY(cuda::render(ptr<const float>(params), camera, trace, shade, out, ptr<void>(stream)));
            } else {
                cpu::render(ptr<const float>(params), camera, trace, shade, out);
            }
        },
        "Sphere-trace the network's zero level set into the given buffers (any may be 0): image [H, W, 3] uint8, "
        "depth [H, W] float32, normal [H, W, 3] float32, hit [H, W] uint8.",
        py::arg("device"), py::arg("params"), py::arg("camera"), py::arg("trace"), py::arg("shade"), py::arg("image"),
        py::arg("depth"), py::arg("normal"), py::arg("hit"), py::arg("stream"));

    m.def(
        "mlp_layout",
        [] {
            std::vector<std::tuple<int, int, int, int>> layers;
            for (int l = 0; l < mlp::kLayers; ++l)
                layers.push_back({mlp::weight_offset(l), mlp::bias_offset(l), mlp::fan_in(l), mlp::fan_out(l)});
            return layers;
        },
        "The flat parameter layout the native network reads (nis/mlp.h): per layer, input first, "
        "(weight_offset, bias_offset, fan_in, fan_out); W [fan_in, fan_out] row-major from weight_offset.");

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
