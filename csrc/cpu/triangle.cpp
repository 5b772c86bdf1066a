// CPU backend of the per-pair closest-point op: an OpenMP loop around the
// shared NIS_HD function in triangle.h.
#include "nis/triangle_ops.h"
#include "nis/triangle.h"

namespace nis {
namespace cpu {

template <typename T>
void closest_point_triangles(const T* points, const T* triangles, int64_t n, T* out_points, T* out_bary,
                             int32_t* out_region) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const T* t = triangles + 9 * i;
        const ClosestOnTriangle<T> r =
            closest_point_on_triangle(load3(points, i), load3(t, 0), load3(t, 1), load3(t, 2));
        store3(out_points, i, r.point);
        store3(out_bary, i, make_vec3(r.u, r.v, r.w));
        out_region[i] = r.region;
    }
}

template void closest_point_triangles<float>(const float*, const float*, int64_t, float*, float*, int32_t*);
template void closest_point_triangles<double>(const double*, const double*, int64_t, double*, double*, int32_t*);

}  // namespace cpu
}  // namespace nis
