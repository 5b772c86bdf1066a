// Declarations of the per-pair triangle op (closest point of points[i] on triangles[i]), one
// entry per backend. Raw pointers and sizes only (no torch types), as in mesh_ops.h and decode_ops.h.
#pragma once
#include <cstdint>

namespace nis {
namespace cpu {
template <typename T>
void closest_point_triangles(const T* points, const T* triangles, int64_t n, T* out_points, T* out_bary,
                             int32_t* out_region);
}  // namespace cpu

namespace cuda {
template <typename T>
void closest_point_triangles(const T* points, const T* triangles, int64_t n, T* out_points, T* out_bary,
                             int32_t* out_region, void* stream);
}  // namespace cuda
}  // namespace nis
