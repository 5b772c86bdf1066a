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

template <typename T>
NIS_HD void query_closest(const MeshView<T>& m, const T* points, int64_t i, int32_t sign_mode, T beta, T* out_dist,
                          T* out_points, int32_t* out_face) {
    const Vec3<T> p = load3(points, i);
    const ClosestHit<T> hit = closest_point_on_mesh(m, p, T(INFINITY));
    T dist = std::sqrt(hit.dist_sq);
    if (sign_mode == kSignWinding) {
        if (winding_number(m, p, beta) > T(0.5)) dist = -dist;
    } else if (sign_mode == kSignPseudonormal) {
        dist *= pseudonormal_sign(m, p, hit);
    }
    if (out_dist) out_dist[i] = dist;
    if (out_points) store3(out_points, i, hit.point);
    if (out_face) out_face[i] = m.face_ids[hit.tri];
}

template <typename T>
NIS_HD void query_winding(const MeshView<T>& m, const T* points, int64_t i, T beta, T* out_winding) {
    out_winding[i] = winding_number(m, load3(points, i), beta);
}

template <typename T>
NIS_HD void query_ray(const MeshView<T>& m, const T* origins, const T* directions, int64_t i, T* out_t,
                      int32_t* out_face) {
    const RayHit<T> hit = ray_mesh(m, load3(origins, i), load3(directions, i), T(INFINITY));
    out_t[i] = hit.t;
    out_face[i] = hit.tri >= 0 ? m.face_ids[hit.tri] : -1;
}

}  // namespace nis
