// CUDA backend of the per-pair closest-point op: the same NIS_HD function as
// the CPU loop, one thread per pair.
#include "nis/launch.h"
#include "nis/triangle_ops.h"
#include "nis/triangle.h"

namespace nis {
namespace cuda {

template <typename T>
__global__ void closest_point_triangles_kernel(const T* __restrict__ points, const T* __restrict__ triangles,
                                               int64_t n, T* out_points, T* out_bary, int32_t* out_region) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const T* t = triangles + 9 * i;
    const ClosestOnTriangle<T> r = closest_point_on_triangle(load3(points, i), load3(t, 0), load3(t, 1), load3(t, 2));
    store3(out_points, i, r.point);
    store3(out_bary, i, make_vec3(r.u, r.v, r.w));
    out_region[i] = r.region;
}

template <typename T>
void closest_point_triangles(const T* points, const T* triangles, int64_t n, T* out_points, T* out_bary,
                             int32_t* out_region, void* stream) {
    require_cuda("closest_point_triangles");
    if (n == 0) return;
    constexpr int kBlock = 256;
    closest_point_triangles_kernel<T><<<grid_for(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        points, triangles, n, out_points, out_bary, out_region);
    check_cuda(cudaGetLastError(), "closest_point_triangles");
}

template void closest_point_triangles<float>(const float*, const float*, int64_t, float*, float*, int32_t*, void*);
template void closest_point_triangles<double>(const double*, const double*, int64_t, double*, double*, int32_t*,
                                              void*);

}  // namespace cuda
}  // namespace nis
