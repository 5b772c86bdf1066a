// CUDA backend of the mesh queries: the BVH uploaded once (DeviceMesh owns the
// device buffers), one thread per query running the per-point functions of
// mesh_query.h, the same code as the CPU loops.
#include <cuda_runtime.h>

#include "nis/launch.h"
#include "nis/mesh_ops.h"
#include "nis/mesh_query.h"

namespace nis {
namespace cuda {

namespace {
// One cudaMalloc'd array, freed on destruction (errors at exit are ignored on purpose).
template <typename T>
struct DeviceArray {
    T* ptr = nullptr;
    DeviceArray() = default;
    explicit DeviceArray(const std::vector<T>& host) {
        check_cuda(cudaMalloc(&ptr, host.size() * sizeof(T)), "cudaMalloc (mesh BVH)");
        check_cuda(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                   "cudaMemcpy (mesh BVH)");
    }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    ~DeviceArray() {
        if (ptr) cudaFree(ptr);
    }
};
}  // namespace

class DeviceMesh {
   public:
    explicit DeviceMesh(const MeshBvhHost& h)
        : nodes_(h.nodes), face_ids_(h.face_ids), pn_ids_(h.pseudonormal_ids), pn_unsafe_(h.pseudonormal_unsafe), packets_f_(h.packets_f), boxes_f_(h.child_boxes_f), pn_f_(h.pseudonormal_table_f), fwn_f_(h.fwn_f),
          packets_d_(h.packets_d), boxes_d_(h.child_boxes_d), pn_d_(h.pseudonormal_table_d), fwn_d_(h.fwn_d),
          num_nodes_(static_cast<int32_t>(h.nodes.size())), num_slots_(static_cast<int32_t>(h.face_ids.size())),
          closed_(h.closed), pseudonormal_exact_(h.pseudonormal_exact), scale_(h.scale) {}

    MeshView<float> view(float) const {
        return {nodes_.ptr, packets_f_.ptr, boxes_f_.ptr, face_ids_.ptr, pn_ids_.ptr, pn_f_.ptr, pn_unsafe_.ptr, fwn_f_.ptr, num_nodes_, num_slots_, closed_, pseudonormal_exact_,
                float(scale_), float(1.0 / scale_)};
    }
    MeshView<double> view(double) const {
        return {nodes_.ptr, packets_d_.ptr, boxes_d_.ptr, face_ids_.ptr, pn_ids_.ptr, pn_d_.ptr, pn_unsafe_.ptr, fwn_d_.ptr, num_nodes_, num_slots_, closed_, pseudonormal_exact_, scale_,
                1.0 / scale_};
    }

   private:
    DeviceArray<BvhNode> nodes_;
    DeviceArray<int32_t> face_ids_, pn_ids_;
    DeviceArray<uint8_t> pn_unsafe_;
    DeviceArray<float> packets_f_, boxes_f_, pn_f_, fwn_f_;
    DeviceArray<double> packets_d_, boxes_d_, pn_d_, fwn_d_;
    int32_t num_nodes_, num_slots_;
    bool closed_, pseudonormal_exact_;
    double scale_;
};

std::shared_ptr<DeviceMesh> upload_mesh(const MeshBvhHost& host) {
    require_cuda("MeshSDF on a CUDA device");
    return std::make_shared<DeviceMesh>(host);
}

namespace {
constexpr int kBlock = 128;

template <typename T>
__global__ void closest_kernel(MeshView<T> m, const T* __restrict__ points, int64_t n, int32_t sign_mode, T beta,
                               T* out_dist, T* out_points, int32_t* out_face) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    query_closest<T>(m, points, i, sign_mode, beta, out_dist, out_points, out_face, nullptr);  // nothing to carry over
}

template <typename T>
__global__ void winding_kernel(MeshView<T> m, const T* __restrict__ points, int64_t n, T beta, T* out_winding) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) query_winding(m, points, i, beta, out_winding);
}

template <typename T>
__global__ void ray_kernel(MeshView<T> m, const T* __restrict__ origins, const T* __restrict__ directions, int64_t n,
                           T* out_t, int32_t* out_face) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) query_ray(m, origins, directions, i, out_t, out_face);
}
}  // namespace

template <typename T>
void mesh_closest(const DeviceMesh& m, const T* points, int64_t n, int32_t sign_mode, T beta, T* out_dist,
                  T* out_points, int32_t* out_face, void* stream) {
    require_cuda("MeshSDF.sdf/closest");
    if (n == 0) return;
    closest_kernel<T><<<grid_for(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        m.view(T{}), points, n, sign_mode, beta, out_dist, out_points, out_face);
    check_cuda(cudaGetLastError(), "mesh_closest");
}

template <typename T>
void mesh_winding(const DeviceMesh& m, const T* points, int64_t n, T beta, T* out_winding, void* stream) {
    require_cuda("MeshSDF.winding");
    if (n == 0) return;
    winding_kernel<T><<<grid_for(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(m.view(T{}), points, n,
                                                                                              beta, out_winding);
    check_cuda(cudaGetLastError(), "mesh_winding");
}

template <typename T>
void mesh_intersect(const DeviceMesh& m, const T* origins, const T* directions, int64_t n, T* out_t,
                    int32_t* out_face, void* stream) {
    require_cuda("MeshSDF.intersect");
    if (n == 0) return;
    ray_kernel<T><<<grid_for(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(m.view(T{}), origins,
                                                                                          directions, n, out_t, out_face);
    check_cuda(cudaGetLastError(), "mesh_intersect");
}

#define NIS_INSTANTIATE(T)                                                                                         \
    template void mesh_closest<T>(const DeviceMesh&, const T*, int64_t, int32_t, T, T*, T*, int32_t*, void*);      \
    template void mesh_winding<T>(const DeviceMesh&, const T*, int64_t, T, T*, void*);                             \
    template void mesh_intersect<T>(const DeviceMesh&, const T*, const T*, int64_t, T*, int32_t*, void*);
NIS_INSTANTIATE(float)
NIS_INSTANTIATE(double)
#undef NIS_INSTANTIATE

}  // namespace cuda
}  // namespace nis
