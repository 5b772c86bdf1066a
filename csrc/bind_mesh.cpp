// Bindings of the mesh queries: nis_fast._C.MeshBvh, built once on the CPU,
// uploaded to the GPU on request; queries take raw pointers and a device name.
#include <cmath>
#include <mutex>
#include <type_traits>
#include <pybind11/numpy.h>

#include "bind_util.h"
#include "nis/mesh_ops.h"

namespace nis {

namespace {
// Built with or without its float64 arrays; without, the first float64 query builds them (and,
// on the GPU, uploads them) once, whichever threads query at the same time (the GIL is released).
struct MeshBvh {
    MeshBvhHost host;
    std::shared_ptr<cuda::DeviceMesh> device;  // set by upload_cuda()
    // Held while the float64 arrays are built or uploaded, and while their state is read: they are
    // never changed after that, so the queries read them unlocked.
    mutable std::mutex float64_mutex;
    bool device_float64 = false;

    template <typename T>
    MeshView<T> host_view() {
        if (std::is_same<T, double>::value) {
            std::lock_guard<std::mutex> lock(float64_mutex);
            add_float64(host);  // returns at once when they exist
        }
        return host.view<T>();
    }
    template <typename T>
    const cuda::DeviceMesh& require_device() {
        if (!device) throw std::runtime_error("nis_fast._C.MeshBvh: upload_cuda() was not called before a CUDA query");
        if (std::is_same<T, double>::value) {
            std::lock_guard<std::mutex> lock(float64_mutex);
            add_float64(host);
            if (!device_float64) cuda::upload_float64(*device, host);
            device_float64 = true;
        }
        return *device;
    }
    template <typename F>
    auto locked(F read) const {
        std::lock_guard<std::mutex> lock(float64_mutex);
        return read(host);
    }
};
}  // namespace

void bind_mesh(py::module_& m) {
    m.def(
        "cuda_query_order_bytes",
        [](int64_t n) -> std::size_t {
            std::size_t bytes = 0;
            NIS_CUDA_ONLY(bytes = cuda::query_order_bytes(n));
            return bytes;
        },
        "Device workspace (bytes) a CUDA batch of n closest-point or winding queries needs to run in Morton order "
        "(0: input order).");
    m.def(
        "mesh_defects",
        [](std::uintptr_t faces_ptr, int64_t n_faces, int64_t n_vertices) {
            if (n_faces < 0 || n_vertices < 0) throw std::invalid_argument("mesh_defects: negative size");
            const int32_t* faces = ptr<const int32_t>(faces_ptr);
            MeshDefects d;
            {
                py::gil_scoped_release nogil;
                for (int64_t i = 0; i < 3 * n_faces; ++i)
                    if (faces[i] < 0 || faces[i] >= n_vertices)
                        throw std::invalid_argument("mesh_defects: face index out of range");
                d = mesh_defects(faces, n_faces, n_vertices);
            }
            py::dict out;
            out["closed"] = d.closed;
            out["boundary_edges"] = d.boundary_edges;
            out["non_manifold_edges"] = d.non_manifold_edges;
            out["inconsistent_edges"] = d.inconsistent_edges;
            out["duplicate_faces"] = d.duplicate_faces;
            return out;
        },
        "The connectivity defects of a mesh (dict): closed, by the BVH build's definition (MeshBvh.closed: no face "
        "repeats an index, every edge walked by exactly two faces in opposite directions; no faces: True); "
        "boundary, non-manifold and inconsistently oriented edges (over faces that repeat no index); duplicate "
        "faces. faces_ptr: the address of C-contiguous int32 [n_faces, 3] on the host.",
        py::arg("faces_ptr"), py::arg("n_faces"), py::arg("n_vertices"));
    py::class_<MeshBvh>(m, "MeshBvh", "Triangle BVH with winding-number and pseudonormal data (build on the CPU).")
        .def(py::init([](py::array_t<double, py::array::c_style> vertices, py::array_t<int32_t, py::array::c_style> faces,
                         int leaf_size, bool float64) {
                 if (vertices.ndim() != 2 || vertices.shape(1) != 3 || faces.ndim() != 2 || faces.shape(1) != 3)
                     throw std::invalid_argument("MeshBvh: vertices and faces must have shape (N, 3)");
                 const int32_t* f = faces.data();
                 const double* v = vertices.data();
                 const int64_t nv = vertices.shape(0), nf = faces.shape(0);
                 if (nf == 0) throw std::invalid_argument("MeshBvh: the mesh has no faces");
                 for (int64_t i = 0; i < 3 * nf; ++i)
                     if (f[i] < 0 || f[i] >= nv) throw std::invalid_argument("MeshBvh: face index out of range");
                 // A NaN centroid would index the SAH bins out of range: refuse it here, whatever the caller checked.
                 for (int64_t i = 0; i < 3 * nv; ++i)
                     if (!std::isfinite(v[i])) throw std::invalid_argument("MeshBvh: vertices must be finite (NaN or inf found)");
                 auto bvh = std::make_unique<MeshBvh>();
                 {
                     py::gil_scoped_release nogil;
                     bvh->host = build_mesh_bvh(vertices.data(), nv, f, nf, leaf_size, float64);
                 }
                 return bvh;
             }),
             py::arg("vertices"), py::arg("faces"), py::arg("leaf_size") = 4, py::arg("float64") = false)
        .def_property_readonly("num_nodes", [](const MeshBvh& b) { return b.host.nodes.size(); })
        .def_property_readonly("num_faces", [](const MeshBvh& b) { return b.host.num_faces; })
        .def_property_readonly("depth", [](const MeshBvh& b) { return b.host.depth; })
        .def_property_readonly("closed", [](const MeshBvh& b) { return b.host.closed; })
        .def_property_readonly("pseudonormal_exact", [](const MeshBvh& b) { return b.host.pseudonormal_exact; })
        .def_property_readonly("on_cuda", [](const MeshBvh& b) { return static_cast<bool>(b.device); })
        .def_property_readonly("has_float64",
                               [](const MeshBvh& b) {
                                   return b.locked([](const MeshBvhHost& h) { return h.has_float64(); });
                               })
        .def_property_readonly("nbytes",
                               [](const MeshBvh& b) {
                                   return b.locked([](const MeshBvhHost& h) { return h.nbytes(); });
                               },
                               "Host memory of the BVH arrays (the float64 ones once a float64 query built them).")
        .def("upload_cuda",
             [](MeshBvh& b) {
                 if (b.device) return;
                 NIS_CUDA_ONLY(b.device = cuda::upload_mesh(b.host));
             })
        .def(
            "closest",
            [](MeshBvh& b, const std::string& device, const std::string& dtype, std::uintptr_t points, int64_t n,
               int32_t sign_mode, double beta, std::uintptr_t out_dist, std::uintptr_t out_points,
               std::uintptr_t out_face, std::uintptr_t workspace, std::size_t workspace_bytes, std::uintptr_t stream) {
                const bool cuda = is_cuda(device);
                dispatch_float(dtype, [&](auto tag) {
                    using T = decltype(tag);
                    py::gil_scoped_release nogil;
                    if (cuda) {
                        NIS_CUDA_ONLY(cuda::mesh_closest(b.require_device<T>(), ptr<const T>(points), n, sign_mode, T(beta),
                                                         ptr<T>(out_dist), ptr<T>(out_points), ptr<int32_t>(out_face),
                                                         ptr<void>(workspace), workspace_bytes, ptr<void>(stream)));
                    } else {
                        cpu::mesh_closest(b.host_view<T>(), ptr<const T>(points), n, sign_mode, T(beta), ptr<T>(out_dist),
                                          ptr<T>(out_points), ptr<int32_t>(out_face));
                    }
                });
            },
            "Closest point per query (+ sign: 0 none, 1 winding number, 2 pseudonormal); null outputs are skipped. "
            "CUDA: a workspace of cuda_query_order_bytes(n) lets the batch run in Morton order (CPU: ignored).")
        .def(
            "winding",
            [](MeshBvh& b, const std::string& device, const std::string& dtype, std::uintptr_t points, int64_t n,
               double beta, std::uintptr_t out, std::uintptr_t workspace, std::size_t workspace_bytes,
               std::uintptr_t stream) {
                const bool cuda = is_cuda(device);
                dispatch_float(dtype, [&](auto tag) {
                    using T = decltype(tag);
                    py::gil_scoped_release nogil;
                    if (cuda) {
                        NIS_CUDA_ONLY(cuda::mesh_winding(b.require_device<T>(), ptr<const T>(points), n, T(beta), ptr<T>(out),
                                                         ptr<void>(workspace), workspace_bytes, ptr<void>(stream)));
                    } else {
                        cpu::mesh_winding(b.host_view<T>(), ptr<const T>(points), n, T(beta), ptr<T>(out));
                    }
                });
            },
            "Generalised winding number per query (fast: dipole expansion beyond beta * node radius); the workspace "
            "as for closest.")
        .def(
            "intersect",
            [](MeshBvh& b, const std::string& device, const std::string& dtype, std::uintptr_t origins,
               std::uintptr_t directions, int64_t n, std::uintptr_t out_t, std::uintptr_t out_face,
               std::uintptr_t stream) {
                const bool cuda = is_cuda(device);
                dispatch_float(dtype, [&](auto tag) {
                    using T = decltype(tag);
                    py::gil_scoped_release nogil;
                    if (cuda) {
                        NIS_CUDA_ONLY(cuda::mesh_intersect(b.require_device<T>(), ptr<const T>(origins),
                                                           ptr<const T>(directions), n, ptr<T>(out_t),
                                                           ptr<int32_t>(out_face), ptr<void>(stream)));
                    } else {
                        cpu::mesh_intersect(b.host_view<T>(), ptr<const T>(origins), ptr<const T>(directions), n,
                                            ptr<T>(out_t), ptr<int32_t>(out_face));
                    }
                });
            },
            "Closest ray hit: t (inf on a miss) and face id (-1 on a miss).");
}

}  // namespace nis
