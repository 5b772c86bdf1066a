// CUDA backend of the mesh queries: the BVH uploaded once (DeviceMesh owns the
// device buffers), one thread per query running the per-point functions of
// mesh_query.h, the same code as the CPU loops.
//
// Large batches run in Morton (Z-curve) order of the points (morton_code in
// mesh_query.h), as on the CPU: the 32 threads of a warp then hold nearby points,
// walk the same nodes in step instead of diverging, and read the same node and
// triangle cache lines.
#include <cuda_runtime.h>

#include <cfloat>
#include <cub/device/device_radix_sort.cuh>
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
    const T* data() const { return ptr; }
};

// The arrays that do not depend on the precision, on the device.
struct DeviceShared {
    DeviceArray<BvhNode> nodes;
    DeviceArray<int32_t> face_ids, pseudonormal_ids;
    DeviceArray<uint8_t> pseudonormal_unsafe;
    explicit DeviceShared(const MeshBvhHost& h)
        : nodes(h.nodes), face_ids(h.face_ids), pseudonormal_ids(h.pseudonormal_ids),
          pseudonormal_unsafe(h.pseudonormal_unsafe) {}
};
}  // namespace

// The arrays that come in each precision (PrecisionArrays on the device). The oriented boxes
// stay on the host (child_boxes is null): CUDA threads do not test them (kTestOrientedBoxes in bvh.h).
template <typename T>
struct DevicePrecision {
    DeviceArray<T> packets, child_boxes, pseudonormal_table, fwn;
    explicit DevicePrecision(const PrecisionArrays<T>& a)
        : packets(a.packets), pseudonormal_table(a.pseudonormal_table), fwn(a.fwn) {}
};

class DeviceMesh {
   public:
    explicit DeviceMesh(const MeshBvhHost& h) : shared_(h), f_(h.f), view_f_(make_mesh_view<float>(h, shared_, f_)) {}

    void upload_float64(const MeshBvhHost& h) {
        if (d_) return;
        d_ = std::make_unique<DevicePrecision<double>>(h.d);
        view_d_ = make_mesh_view<double>(h, shared_, *d_);
    }
    MeshView<float> view(float) const { return view_f_; }
    MeshView<double> view(double) const {
        if (!d_) throw std::logic_error("DeviceMesh: float64 query before upload_float64");
        return view_d_;
    }

   private:
    DeviceShared shared_;
    DevicePrecision<float> f_;
    std::unique_ptr<DevicePrecision<double>> d_;  // set by upload_float64
    MeshView<float> view_f_;
    MeshView<double> view_d_{};  // valid once d_ is set
};

std::shared_ptr<DeviceMesh> upload_mesh(const MeshBvhHost& host) {
    require_cuda("MeshSDF on a CUDA device");
    return std::make_shared<DeviceMesh>(host);
}

void upload_float64(DeviceMesh& m, const MeshBvhHost& host) { m.upload_float64(host); }

namespace {
constexpr int kBlock = 128;
constexpr int64_t kSortFrom = int64_t(1) << 15;  // smaller batches do not fill the GPU: input order

// A float as an int that orders like it (for atomicMin/atomicMax on floats).
__device__ int ordered_int(float f) {
    const int b = __float_as_int(f);
    return b >= 0 ? b : b ^ 0x7FFFFFFF;
}
__device__ float ordered_float(int k) { return __int_as_float(k >= 0 ? k : k ^ 0x7FFFFFFF); }

__global__ void box_init_kernel(int* box) {
    if (threadIdx.x < 6) box[threadIdx.x] = threadIdx.x < 3 ? ordered_int(FLT_MAX) : ordered_int(-FLT_MAX);
}

// The points' bounding box (box[0..2] min, box[3..5] max, as ordered ints): each thread
// folds a grid-stride share, warps fold by shuffles, one atomic per warp and bound.
template <typename T>
__global__ void box_kernel(const T* __restrict__ points, int64_t n, int* box) {
    float lo[3] = {FLT_MAX, FLT_MAX, FLT_MAX}, hi[3] = {-FLT_MAX, -FLT_MAX, -FLT_MAX};
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        for (int k = 0; k < 3; ++k) {
            const float v = static_cast<float>(points[3 * i + k]);
            lo[k] = fminf(lo[k], v);
            hi[k] = fmaxf(hi[k], v);
        }
    for (int k = 0; k < 3; ++k)
        for (int lane = 16; lane > 0; lane /= 2) {
            lo[k] = fminf(lo[k], __shfl_xor_sync(0xFFFFFFFFu, lo[k], lane));
            hi[k] = fmaxf(hi[k], __shfl_xor_sync(0xFFFFFFFFu, hi[k], lane));
        }
    if (threadIdx.x % 32 == 0)
        for (int k = 0; k < 3; ++k) {
            atomicMin(box + k, ordered_int(lo[k]));
            atomicMax(box + 3 + k, ordered_int(hi[k]));
        }
}

template <typename T>
__global__ void morton_kernel(const T* __restrict__ points, int64_t n, const int* __restrict__ box, uint32_t* codes,
                              int32_t* ids) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float lo[3], inv_extent[3];
    for (int k = 0; k < 3; ++k) {
        lo[k] = ordered_float(box[k]);
        const float ext = ordered_float(box[3 + k]) - lo[k];
        inv_extent[k] = ext > 0.0f ? 1.0f / ext : 0.0f;
    }
    codes[i] = morton_code(points + 3 * i, lo, inv_extent);
    ids[i] = static_cast<int32_t>(i);
}

// The layout of a query-order workspace: the sort's scratch, codes and ids twice (the sort's in and
// out), the box; each 256-byte aligned. Zero bytes where the batch runs in input order.
struct OrderLayout {
    size_t sort_bytes = 0, scratch = 0, array = 0, total = 0;
    explicit OrderLayout(int64_t n) {
        if (n < kSortFrom || n > INT32_MAX) return;
        check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<uint32_t*>(nullptr),
                                                   static_cast<uint32_t*>(nullptr), static_cast<int32_t*>(nullptr),
                                                   static_cast<int32_t*>(nullptr), static_cast<int>(n), 0, 30),
                   "cub::DeviceRadixSort (size)");
        const auto aligned = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
        scratch = aligned(sort_bytes);
        array = aligned(size_t(n) * 4);
        total = scratch + 4 * array + 256;
    }
};

// The order a batch's queries run in: ids()[k] is the point the k-th thread takes (nullptr:
// input order). Sorting is only an optimisation: without a workspace of OrderLayout's size the
// queries run in input order.
class QueryOrder {
   public:
    template <typename T>
    QueryOrder(const T* points, int64_t n, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
        const OrderLayout layout(n);
        if (layout.total == 0 || workspace == nullptr || workspace_bytes < layout.total) return;
        char* at = static_cast<char*>(workspace);
        void* sort_scratch = at;
        uint32_t* codes = reinterpret_cast<uint32_t*>(at + layout.scratch);
        uint32_t* codes_sorted = reinterpret_cast<uint32_t*>(at + layout.scratch + layout.array);
        int32_t* ids = reinterpret_cast<int32_t*>(at + layout.scratch + 2 * layout.array);
        int32_t* ids_sorted = reinterpret_cast<int32_t*>(at + layout.scratch + 3 * layout.array);
        int* box = reinterpret_cast<int*>(at + layout.scratch + 4 * layout.array);
        box_init_kernel<<<1, 32, 0, stream>>>(box);
        box_kernel<T><<<std::min<unsigned>(grid_for(n, 256), 1024), 256, 0, stream>>>(points, n, box);
        morton_kernel<T><<<grid_for(n, 256), 256, 0, stream>>>(points, n, box, codes, ids);
        check_cuda(cudaGetLastError(), "query order (Morton codes)");
        size_t sort_bytes = layout.sort_bytes;
        check_cuda(cub::DeviceRadixSort::SortPairs(sort_scratch, sort_bytes, codes, codes_sorted, ids, ids_sorted,
                                                   static_cast<int>(n), 0, 30, stream),
                   "cub::DeviceRadixSort");
        ids_ = ids_sorted;
    }
    const int32_t* ids() const { return ids_; }

   private:
    const int32_t* ids_ = nullptr;
};

__device__ int64_t query_index(const int32_t* __restrict__ order, int64_t k) { return order ? order[k] : k; }

template <typename T>
__global__ void closest_kernel(MeshView<T> m, const T* __restrict__ points, const int32_t* __restrict__ order, int64_t n,
                               int32_t sign_mode, T beta, T* out_dist, T* out_points, int32_t* out_face) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k >= n) return;
    query_closest<T>(m, points, query_index(order, k), sign_mode, beta, out_dist, out_points, out_face,
                     nullptr);  // nothing to carry over
}

template <typename T>
__global__ void winding_kernel(MeshView<T> m, const T* __restrict__ points, const int32_t* __restrict__ order,
                               int64_t n, T beta, T* out_winding) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k < n) query_winding(m, points, query_index(order, k), beta, out_winding);
}

template <typename T>
__global__ void ray_kernel(MeshView<T> m, const T* __restrict__ origins, const T* __restrict__ directions, int64_t n,
                           T* out_t, int32_t* out_face) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) query_ray(m, origins, directions, i, out_t, out_face);
}
}  // namespace

size_t query_order_bytes(int64_t n) {
    require_cuda("MeshSDF.sdf/closest/winding");
    return OrderLayout(n).total;
}

template <typename T>
void mesh_closest(const DeviceMesh& m, const T* points, int64_t n, int32_t sign_mode, T beta, T* out_dist,
                  T* out_points, int32_t* out_face, void* workspace, size_t workspace_bytes, void* stream) {
    require_cuda("MeshSDF.sdf/closest");
    if (n == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    const QueryOrder order(points, n, workspace, workspace_bytes, s);
    closest_kernel<T><<<grid_for(n, kBlock), kBlock, 0, s>>>(m.view(T{}), points, order.ids(), n, sign_mode, beta,
                                                             out_dist, out_points, out_face);
    check_cuda(cudaGetLastError(), "mesh_closest");
}

template <typename T>
void mesh_winding(const DeviceMesh& m, const T* points, int64_t n, T beta, T* out_winding, void* workspace,
                  size_t workspace_bytes, void* stream) {
    require_cuda("MeshSDF.winding");
    if (n == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    const QueryOrder order(points, n, workspace, workspace_bytes, s);
    winding_kernel<T><<<grid_for(n, kBlock), kBlock, 0, s>>>(m.view(T{}), points, order.ids(), n, beta, out_winding);
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
    template void mesh_closest<T>(const DeviceMesh&, const T*, int64_t, int32_t, T, T*, T*, int32_t*, void*, size_t, \
                                  void*);                                                                          \
    template void mesh_winding<T>(const DeviceMesh&, const T*, int64_t, T, T*, void*, size_t, void*);              \
    template void mesh_intersect<T>(const DeviceMesh&, const T*, const T*, int64_t, T*, int32_t*, void*);
NIS_INSTANTIATE(float)
NIS_INSTANTIATE(double)
#undef NIS_INSTANTIATE

}  // namespace cuda
}  // namespace nis
