// CPU backend of the mesh queries: OpenMP loops around the per-point functions
// of mesh_query.h (the same ones the CUDA kernels run). Dynamic scheduling:
// query cost varies a lot between points near and far from the surface.
#include "nis/mesh_ops.h"
#include "nis/mesh_query.h"

namespace nis {
namespace cpu {

constexpr int kChunk = 64;

template <typename T>
void mesh_closest(const MeshView<T>& m, const T* points, int64_t n, int32_t sign_mode, T beta, T* out_dist,
                  T* out_points, int32_t* out_face) {
#pragma omp parallel for schedule(dynamic, kChunk)
    for (int64_t i = 0; i < n; ++i) query_closest(m, points, i, sign_mode, beta, out_dist, out_points, out_face);
}

template <typename T>
void mesh_winding(const MeshView<T>& m, const T* points, int64_t n, T beta, T* out_winding) {
#pragma omp parallel for schedule(dynamic, kChunk)
    for (int64_t i = 0; i < n; ++i) query_winding(m, points, i, beta, out_winding);
}

template <typename T>
void mesh_intersect(const MeshView<T>& m, const T* origins, const T* directions, int64_t n, T* out_t,
                    int32_t* out_face) {
#pragma omp parallel for schedule(dynamic, kChunk)
    for (int64_t i = 0; i < n; ++i) query_ray(m, origins, directions, i, out_t, out_face);
}

#define NIS_INSTANTIATE(T)                                                                                       \
    template void mesh_closest<T>(const MeshView<T>&, const T*, int64_t, int32_t, T, T*, T*, int32_t*);          \
    template void mesh_winding<T>(const MeshView<T>&, const T*, int64_t, T, T*);                                 \
    template void mesh_intersect<T>(const MeshView<T>&, const T*, const T*, int64_t, T*, int32_t*);
NIS_INSTANTIATE(float)
NIS_INSTANTIATE(double)
#undef NIS_INSTANTIATE

}  // namespace cpu
}  // namespace nis
