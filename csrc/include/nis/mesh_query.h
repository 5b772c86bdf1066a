// One query per point, the body of both the OpenMP loop (cpu/mesh_query.cpp)
// and the CUDA kernel (cuda/mesh_query.cu): closest point (+ sign), winding
// number, ray hit. Outputs that are null pointers are skipped.
#pragma once
#include "bvh.h"
#include "ray.h"
#include "winding.h"

namespace nis {

enum SignMode : int32_t {
    kSignNone = 0,          // unsigned distance
    kSignWinding = 1,       // negative where the generalised winding number > 1/2
    kSignPseudonormal = 2,  // angle-weighted pseudonormal at the closest point
};

// What one closest-point query leaves for the next, nearby one on the same
// thread (the CPU loop runs queries in Morton order; a CUDA thread starts fresh).
template <typename T>
struct QueryCarry {
    int32_t tri = -1;      // BVH-order triangle found: seeds the next distance search
    Vec3<T> point{};       // the query point ...
    T dist = T(-1);        // ... and its distance: the open ball B(point, dist) holds no surface
    bool inside = false;   // its winding-number decision
};

// On a closed mesh (every edge shared by exactly two oppositely oriented faces)
// the winding number is an integer, constant on each connected piece of space
// off the surface; a ball that holds no surface lies in one piece. So a point
// inside the previous point's empty ball has the previous point's sign, exactly.
// The 0.999 margin absorbs rounding of the distance.
template <typename T>
NIS_HD bool sign_carries_over(const QueryCarry<T>& carry, Vec3<T> p) {
    return carry.dist > T(0) && length_sq(p - carry.point) < carry.dist * carry.dist * T(0.998);
}

template <typename T>
NIS_HD void query_closest(const MeshView<T>& m, const T* points, int64_t i, int32_t sign_mode, T beta,
                          bool closed, T* out_dist, T* out_points, int32_t* out_face, QueryCarry<T>& carry) {
    const Vec3<T> p = load3(points, i) * m.scale;
    const ClosestHit<T> hit = closest_point_on_mesh(m, p, carry.tri);
    T dist = std::sqrt(hit.dist_sq);
    carry.tri = hit.tri;
    if (sign_mode == kSignWinding) {
        const bool inside = (closed && sign_carries_over(carry, p)) ? carry.inside : winding_number(m, p, beta) > T(0.5);
        carry.point = p;
        carry.dist = dist;
        carry.inside = inside;
        if (inside) dist = -dist;
    } else if (sign_mode == kSignPseudonormal) {
        dist *= pseudonormal_sign(m, p, hit);
    }
    if (out_dist) out_dist[i] = dist * m.inv_scale;
    if (out_points) store3(out_points, i, hit.point * m.inv_scale);
    if (out_face) out_face[i] = m.face_ids[hit.tri];
}

template <typename T>
NIS_HD void query_winding(const MeshView<T>& m, const T* points, int64_t i, T beta, T* out_winding) {
    out_winding[i] = winding_number(m, load3(points, i) * m.scale, beta);
}

template <typename T>
NIS_HD void query_ray(const MeshView<T>& m, const T* origins, const T* directions, int64_t i, T* out_t,
                      int32_t* out_face) {
    // Scaling origin and direction alike leaves t unchanged.
    const RayHit<T> hit = ray_mesh(m, load3(origins, i) * m.scale, load3(directions, i) * m.scale, T(INFINITY));
    out_t[i] = hit.t;
    out_face[i] = hit.tri >= 0 ? m.face_ids[hit.tri] : -1;
}

}  // namespace nis
