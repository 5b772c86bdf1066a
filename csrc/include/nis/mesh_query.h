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

// Large batches run in Morton (Z-curve) order of their points on both backends (the CPU loop,
// cpu/mesh_query.cpp; CUDA threads, cuda/mesh_query.cu): neighbours in the order walk the same
// nodes. morton_code gives a point's 30-bit code (10 bits an axis) in the batch's bounding box,
// given as its low corner and 1 / its extent per axis (0 along a flat one); clamped to the box.
NIS_HD uint32_t morton_spread(uint32_t x) {  // the low 10 bits of x to every third bit
    x = (x | (x << 16)) & 0x030000FFu;
    x = (x | (x << 8)) & 0x0300F00Fu;
    x = (x | (x << 4)) & 0x030C30C3u;
    x = (x | (x << 2)) & 0x09249249u;
    return x;
}

template <typename T, typename P>
NIS_HD uint32_t morton_code(const P* point, const T lo[3], const T inv_extent[3]) {
    uint32_t code = 0;
    for (int k = 0; k < 3; ++k) {
        const T u = (static_cast<T>(point[k]) - lo[k]) * inv_extent[k];  // a product, not a division: cheaper
        const T cell = u > T(0) ? (u < T(1) ? u : T(1)) : T(0);  // NaN (an overflowed extent) -> 0
        code |= morton_spread(static_cast<uint32_t>(cell * T(1023))) << (2 - k);
    }
    return code;
}

// A point of known (integer) winding number, with its distance to the surface.
template <typename T>
struct SignAnchor {
    Vec3<T> point{};
    T dist = T(-1);       // < 0: unset
    int32_t winding = 0;
};

// What one closest-point query leaves for the next, nearby one on the same
// thread (the CPU loop runs queries in Morton order; CUDA threads pass none).
constexpr int kAnchors = 8;

template <typename T>
struct QueryCarry {
    int32_t tri = -1;               // BVH-order triangle found: seeds the next distance search
    SignAnchor<T> anchor[kAnchors];  // the latest points of known winding number (ring buffer)
    int next = 0;                   // slot of the next anchor; the newest is next - 1
};

// On a closed mesh (MeshView::closed: every edge shared by two oppositely oriented faces)
// the winding number is an integer, constant on each connected piece of space
// off the surface, so it can be carried from a point of known winding number:
// - The open ball B(p, d(p)) holds no surface, and two such balls that overlap
//   form one connected, surface-free set: when |p - q| < d(p) + d(q), p and q
//   have the same winding number, exactly. (If the segment pq crossed the
//   surface, d(p) + d(q) <= |p - q|.) The margin covers rounding of the distances
//   (the BVH frame has coordinates of magnitude < 2).
// - Otherwise the segment from the newest anchor to p changes it by the signed
//   count of triangles it crosses (segment_winding_change in ray.h), when no
//   crossing is too near an edge to count for certain.
// The fast winding number is the fallback, and the only method on other meshes.
template <typename T>
NIS_HD bool balls_overlap(const SignAnchor<T>& a, Vec3<T> p, T dist) {
    const T margin = T(256) * machine_eps<T>();
    const T reach = (dist + a.dist) * (T(1) - margin) - margin;
    return a.dist >= T(0) && reach > T(0) && length_sq(p - a.point) < reach * reach;
}

template <typename T>
NIS_HD void remember_anchor(QueryCarry<T>* carry, Vec3<T> p, T dist, int32_t winding) {
    carry->anchor[carry->next] = {p, dist, winding};
    carry->next = (carry->next + 1) % kAnchors;
}

// Where the pseudonormal sign is exact (MeshView::pseudonormal_exact) it is used for points
// farther than this from the surface (BVH frame): nearer, the rounding of the closest point
// could put it in the wrong feature (face, edge, vertex) of its triangle. Faces at a vertex
// within ~8 degrees of opposite are pseudonormal_unsafe; elsewhere a wrong feature takes a
// point ~30 times nearer than this (float32: 2.4e-4 * sin 8 degrees vs ~1e-6 of rounding).
template <typename T>
NIS_HD T pseudonormal_min_distance() {
    return T(2048) * machine_eps<T>();
}

// `carry` is null where queries do not run in sequence (a CUDA thread): the
// sign then comes from the pseudonormal or the fast winding number alone.
template <typename T>
NIS_HD bool winding_sign_inside(const MeshView<T>& m, Vec3<T> p, const ClosestHit<T>& hit, T dist, T beta,
                                QueryCarry<T>* carry) {
    // Outside, exactly, for any mesh (MeshView::outside_dist_sq). Far out this also overrides what
    // rounding does to the search: float32 squared distances of triangles a mesh size apart tie
    // from ~1e6 mesh sizes away, and the pseudonormal of a nearly-closest one may face away.
    if (hit.dist_sq > m.outside_dist_sq) return false;
    if (m.pseudonormal_exact && dist >= pseudonormal_min_distance<T>() && !m.pseudonormal_unsafe[hit.tri]) {
        const bool inside = pseudonormal_sign(m, p, hit) < T(0);
        if (carry) remember_anchor(carry, p, dist, inside ? 1 : 0);
        return inside;
    }
    if (!carry || !m.closed) return winding_number(m, p, beta) > T(0.5);
    bool known = false;
    int32_t w = 0;
    for (int k = 0; k < kAnchors && !known; ++k) {
        if (balls_overlap(carry->anchor[k], p, dist)) {
            w = carry->anchor[k].winding;
            known = true;
        }
    }
    const SignAnchor<T>& newest = carry->anchor[(carry->next + kAnchors - 1) % kAnchors];
    if (!known && newest.dist >= T(0)) {
        const int32_t change = segment_winding_change(m, newest.point, p, known);
        w = newest.winding + change;
    }
    if (!known) w = static_cast<int32_t>(std::floor(winding_number(m, p, beta) + T(0.5)));
    remember_anchor(carry, p, dist, w);
    return w > 0;
}

template <typename T>
NIS_HD void query_closest(const MeshView<T>& m, const T* points, int64_t i, int32_t sign_mode, T beta,
                          T* out_dist, T* out_points, int32_t* out_face, QueryCarry<T>* carry) {
    const Vec3<T> p = load3(points, i) * m.scale;
    const ClosestHit<T> hit = closest_point_on_mesh(m, p, carry ? carry->tri : -1);
    T dist = std::sqrt(hit.dist_sq);
    if (!(dist < T(INFINITY))) {  // the square overflowed (float32 from ~1e19 out), maybe not the length
        const Vec3<T> v = p - hit.point;
        const T s = nis_max(nis_max(std::abs(v.x), std::abs(v.y)), std::abs(v.z));
        if (s < T(INFINITY)) dist = s * length(v * (T(1) / s));
    }
    if (carry) carry->tri = hit.tri;
    if (sign_mode == kSignWinding) {
        // A product, not a branch: near the surface inside and outside come at random (a branch mispredicts).
        dist *= winding_sign_inside(m, p, hit, dist, beta, carry) ? T(-1) : T(1);
    } else if (sign_mode == kSignPseudonormal) {
        // Where the pseudonormal sign is the winding sign (pseudonormal_exact), far points are outside
        // for the same reason; elsewhere the pseudonormal is what was asked for, at any distance.
        const bool far_outside = m.pseudonormal_exact && hit.dist_sq > m.outside_dist_sq;
        dist *= far_outside ? T(1) : pseudonormal_sign(m, p, hit);
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
