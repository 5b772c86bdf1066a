// Host side of the mesh queries: the BVH as built on the CPU (flat arrays in
// both precisions), the builder, and the launchers of each backend.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "bvh.h"

namespace nis {

// The arrays that come in each precision (see MeshView).
template <typename T>
struct PrecisionArrays {
    std::vector<T> packets, child_boxes, pseudonormal_table, fwn;
    int64_t nbytes() const {
        return int64_t((packets.size() + child_boxes.size() + pseudonormal_table.size() + fwn.size()) * sizeof(T));
    }
};

// A built mesh BVH. Triangle data comes in float32 and float64 so that each
// query precision reads triangles of its own precision (float64 is exact).
// Per-triangle arrays are indexed by slot (kLanes per leaf, see MeshView).
//
// The build computes everything in float64 (the float32 arrays are rounded from it),
// but a caller that asks not to keep the float64 arrays gets a copy of the mesh
// instead, from which add_float64 builds them on the first float64 query: they are
// most of the memory, and the fitting pipeline queries in float32 only.
struct MeshBvhHost {
    std::vector<BvhNode> nodes;
    std::vector<int32_t> face_ids;  // per slot, -1 in unused lanes
    std::vector<uint8_t> pseudonormal_unsafe;  // per slot, see MeshView
    std::vector<int32_t> pseudonormal_ids;     // per slot and TriRegion, see MeshView
    PrecisionArrays<float> f;
    PrecisionArrays<double> d;  // empty until add_float64
    // The mesh as given to the build, kept (only) while the float64 arrays are not.
    std::vector<double> source_vertices;
    std::vector<int32_t> source_faces;
    int leaf_size = kLanes;
    int64_t num_faces = 0;
    int32_t depth = 0;
    bool closed = false;  // see MeshView
    bool pseudonormal_exact = false;  // see MeshView
    double scale = 1.0;   // power of two: the arrays hold the mesh times this (see MeshView)
    double outside_dist_sq = 0.0;  // see MeshView

    bool has_float64() const { return !d.packets.empty(); }
    int64_t nbytes() const;  // host memory held by the arrays above
    template <typename T> MeshView<T> view() const;  // view<double> needs has_float64()
};

// The one place a MeshView is filled: sizes, flags and scale from the host BVH `h`, and the
// pointers of the arrays wherever they lie: `shared` has nodes, face_ids, pseudonormal_ids and
// pseudonormal_unsafe, `precision` has packets, child_boxes, pseudonormal_table and fwn, each
// with a data() (h itself and h.f or h.d on the host; their copies on the GPU, mesh_query.cu).
template <typename T, typename Shared, typename Precision>
MeshView<T> make_mesh_view(const MeshBvhHost& h, const Shared& shared, const Precision& precision) {
    return {shared.nodes.data(),
            precision.packets.data(),
            precision.child_boxes.data(),
            shared.face_ids.data(),
            shared.pseudonormal_ids.data(),
            precision.pseudonormal_table.data(),
            shared.pseudonormal_unsafe.data(),
            precision.fwn.data(),
            static_cast<int32_t>(h.nodes.size()),
            static_cast<int32_t>(h.face_ids.size()),
            h.closed,
            h.pseudonormal_exact,
            T(h.scale),
            T(1.0 / h.scale),
            T(h.outside_dist_sq)};
}

// The defects of a mesh's connectivity that matter to the SDF engine (nis_fast.mesh.mesh_report).
// Edges are counted over the faces that repeat no index.
struct MeshDefects {
    bool closed;                 // by the BVH build's definition (build::is_closed in cpu/mesh_topology.cpp):
                                 // no face repeats an index, every edge walked by exactly two faces in opposite
                                 // directions; no faces count as closed
    int64_t boundary_edges;      // walked by one face
    int64_t non_manifold_edges;  // walked by more than two faces
    int64_t inconsistent_edges;  // directed edges walked more than once: neighbours disagree on orientation
    int64_t duplicate_faces;     // faces with the same three vertices as an earlier face (any order)
};
// faces [nf, 3] int32 with indices in [0, nv) (validated by the caller).
MeshDefects mesh_defects(const int32_t* faces, int64_t nf, int64_t nv);

// vertices [nv, 3] float64, faces [nf, 3] int32 (indices already validated).
MeshBvhHost build_mesh_bvh(const double* vertices, int64_t nv, const int32_t* faces, int64_t nf, int leaf_size,
                           bool keep_float64 = true);

// Build the float64 arrays of a BVH built without them, from its copy of the mesh: the build
// again, less the float32 copies and the pseudonormal certificate. The build
// is deterministic; the rebuilt tree is checked to be the same. Not thread-safe: callers
// serialise it (bind_mesh.cpp: once per BVH).
void add_float64(MeshBvhHost& h);

// MeshView::pseudonormal_exact of a BVH, from the faces it was built from and the piece of
// each face (a union-find root over shared edges); also marks pseudonormal_unsafe the faces
// that come nearer than float32 resolves to a face they share no vertex with. The conditions,
// and why they make the pseudonormal sign exact: cpu/embedding.cpp.
bool pseudonormal_sign_is_exact(MeshBvhHost& h, const int32_t* faces, const std::vector<int64_t>& face_piece);

// The representative of i's set in a union-find forest (with path halving).
inline int64_t union_find_root(std::vector<int64_t>& parent, int64_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

namespace cpu {
template <typename T>
void mesh_closest(const MeshView<T>& m, const T* points, int64_t n, int32_t sign_mode, T beta, T* out_dist,
                  T* out_points, int32_t* out_face);
template <typename T>
void mesh_winding(const MeshView<T>& m, const T* points, int64_t n, T beta, T* out_winding);
template <typename T>
void mesh_intersect(const MeshView<T>& m, const T* origins, const T* directions, int64_t n, T* out_t,
                    int32_t* out_face);
}  // namespace cpu

namespace cuda {
// The BVH copied to the GPU once (float32 arrays; the float64 ones by upload_float64, from
// a host BVH that has them); frees its device memory when destroyed.
class DeviceMesh;
std::shared_ptr<DeviceMesh> upload_mesh(const MeshBvhHost& host);
void upload_float64(DeviceMesh& m, const MeshBvhHost& host);
// Device memory a batch of closest-point or winding queries uses to run in Morton order (0 below the
// batch size where that pays); the caller passes that much (from its allocator, on `stream`) as
// `workspace`, or none, and the batch then runs in input order.
size_t query_order_bytes(int64_t n);
template <typename T>
void mesh_closest(const DeviceMesh& m, const T* points, int64_t n, int32_t sign_mode, T beta, T* out_dist,
                  T* out_points, int32_t* out_face, void* workspace, size_t workspace_bytes, void* stream);
template <typename T>
void mesh_winding(const DeviceMesh& m, const T* points, int64_t n, T beta, T* out_winding, void* workspace,
                  size_t workspace_bytes, void* stream);
template <typename T>
void mesh_intersect(const DeviceMesh& m, const T* origins, const T* directions, int64_t n, T* out_t,
                    int32_t* out_face, void* stream);
}  // namespace cuda

}  // namespace nis
