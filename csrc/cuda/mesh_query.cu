// CUDA backend of the mesh queries: the BVH uploaded once (DeviceMesh owns the
// device buffers), one thread per query running the per-point functions of
// mesh_query.h, the same code as the CPU loops.
#include <cuda_runtime.h>

#include <stdexcept>

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

// The arrays that come in each precision (PrecisionArrays on the device).
template <typename T>
struct DevicePrecision {
    DeviceArray<T> packets, boxes, pseudonormals, fwn;
    explicit DevicePrecision(const PrecisionArrays<T>& a)
        : packets(a.packets), boxes(a.child_boxes), pseudonormals(a.pseudonormal_table), fwn(a.fwn) {}
};

class DeviceMesh {
   public:
    explicit DeviceMesh(const MeshBvhHost& h)
        : nodes_(h.nodes), face_ids_(h.face_ids), pn_ids_(h.pseudonormal_ids), pn_unsafe_(h.pseudonormal_unsafe),
          f_(h.f),
          num_nodes_(static_cast<int32_t>(h.nodes.size())), num_slots_(static_cast<int32_t>(h.face_ids.size())),
          closed_(h.closed), pseudonormal_exact_(h.pseudonormal_exact), scale_(h.scale) {}

    void upload_float64(const MeshBvhHost& h) {
        if (!d_) d_ = std::make_unique<DevicePrecision<double>>(h.d);
    }
    MeshView<float> view(float) const { return view_of(f_, float(scale_)); }
    MeshView<double> view(double) const {
        if (!d_) throw std::logic_error("DeviceMesh: float64 query before upload_float64");
        return view_of(*d_, scale_);
    }

   private:
    template <typename T>
    MeshView<T> view_of(const DevicePrecision<T>& a, T scale) const {
        return {nodes_.ptr, a.packets.ptr, a.boxes.ptr, face_ids_.ptr, pn_ids_.ptr, a.pseudonormals.ptr, pn_unsafe_.ptr,
                a.fwn.ptr, num_nodes_, num_slots_, closed_, pseudonormal_exact_, scale, T(1) / scale};
    }

    DeviceArray<BvhNode> nodes_;
    DeviceArray<int32_t> face_ids_, pn_ids_;
    DeviceArray<uint8_t> pn_unsafe_;
    DevicePrecision<float> f_;
    std::unique_ptr<DevicePrecision<double>> d_;  // set by upload_float64
    int32_t num_nodes_, num_slots_;
    bool closed_, pseudonormal_exact_;
    double scale_;
};

std::shared_ptr<DeviceMesh> upload_mesh(const MeshBvhHost& host) {
    require_cuda("MeshSDF on a CUDA device");
    return std::make_shared<DeviceMesh>(host);
}

void upload_float64(DeviceMesh& m, const MeshBvhHost& host) { m.upload_float64(host); }

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
