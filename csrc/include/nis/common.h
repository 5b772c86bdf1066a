// Shared host/device basics: the NIS_HD qualifier and a tiny 3-vector.
// Every piece of maths that the GPU runs is written once in these headers and
// compiled by both the host compiler (CPU backend, tested in CI) and nvcc.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define NIS_HD __host__ __device__ __forceinline__
#else
#define NIS_HD inline __attribute__((always_inline))
#endif

// Marks a short loop over the children of a node for the host compiler to
// vectorise (GCC would otherwise unroll it first). Its body must be scalar
// arithmetic: GCC's `omp simd` lowering gives up on Vec3 temporaries, which is
// why the (longer) packet loop is left to the auto-vectoriser instead.
#if defined(__CUDA_ARCH__) || !defined(_OPENMP)
#define NIS_LANES
#else
#define NIS_LANES _Pragma("omp simd")
#endif

namespace nis {

template <typename T>
struct Vec3 {
    T x, y, z;
};

template <typename T> NIS_HD Vec3<T> make_vec3(T x, T y, T z) { return Vec3<T>{x, y, z}; }
template <typename T> NIS_HD Vec3<T> operator+(Vec3<T> a, Vec3<T> b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
template <typename T> NIS_HD Vec3<T> operator-(Vec3<T> a, Vec3<T> b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
template <typename T> NIS_HD Vec3<T> operator*(Vec3<T> a, T s) { return {a.x * s, a.y * s, a.z * s}; }
template <typename T> NIS_HD Vec3<T> operator*(T s, Vec3<T> a) { return {a.x * s, a.y * s, a.z * s}; }
template <typename T> NIS_HD T dot(Vec3<T> a, Vec3<T> b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
template <typename T> NIS_HD Vec3<T> cross(Vec3<T> a, Vec3<T> b) {
    return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
template <typename T> NIS_HD T length_sq(Vec3<T> a) { return dot(a, a); }
template <typename T> NIS_HD T length(Vec3<T> a) { return std::sqrt(dot(a, a)); }
// Machine epsilon of float and double.
template <typename T> NIS_HD T machine_eps() { return sizeof(T) == 4 ? T(1.1920929e-07) : T(2.220446049250313e-16); }
template <typename T> NIS_HD T nis_min(T a, T b) { return a < b ? a : b; }
template <typename T> NIS_HD T nis_max(T a, T b) { return a > b ? a : b; }
template <typename T> NIS_HD T nis_clamp(T v, T lo, T hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Load the i-th point of a packed [N, 3] array.
template <typename T> NIS_HD Vec3<T> load3(const T* p, int64_t i) { return {p[3 * i], p[3 * i + 1], p[3 * i + 2]}; }
template <typename T> NIS_HD void store3(T* p, int64_t i, Vec3<T> v) {
    p[3 * i] = v.x;
    p[3 * i + 1] = v.y;
    p[3 * i + 2] = v.z;
}

}  // namespace nis
