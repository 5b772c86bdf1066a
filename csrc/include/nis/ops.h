// Declarations of every native op, one entry per backend. Raw pointers and
// sizes only (no torch types), so the module is independent of the torch build.
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
