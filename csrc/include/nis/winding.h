// Generalised winding number (Jacobson et al. 2013) evaluated fast (Barill et
// al. 2018): exact solid angles for triangles near the query, a second-order
// dipole expansion of every BVH subtree that is far enough away.
//
// Data of each child of a node (kFwnStride values, built in cpu/node_data.cpp):
//   N  = sum over triangles of the area vector a_t n_t (= cross(b-a, c-a) / 2),
//   p  = area-weighted centre of the triangles' centroids,
//   r  = radius around p holding every vertex of the node,
//   C  = sum_t (c_t - p) (a_t n_t)^T, row-major (first moment; exact for flat triangles).
// Far field, with d = p - q:  Omega ~= N.d/|d|^3 + tr(C)/|d|^3 - 3 d^T C d / |d|^5.
// "Far" means |d| > beta * r; beta = 2 keeps the error far below what the sign needs.
#pragma once
#include "bvh.h"

namespace nis {

// Signed solid angle of triangle abc seen from q (van Oosterom & Strackee 1983),
// positive when q is behind the triangle (on the side its normal points away from).
template <typename T>
NIS_HD T triangle_solid_angle(Vec3<T> q, Vec3<T> a, Vec3<T> b, Vec3<T> c) {
    a = a - q;
    b = b - q;
    c = c - q;
    const T la = length(a), lb = length(b), lc = length(c);
    const T num = dot(a, cross(b, c));
    const T den = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb;
    return T(2) * std::atan2(num, den);
}

// Solid angle of a node's far-field expansion, seen from q. C d is scaled by 1 / |d|^2 before
// the product with d (d^T C d itself reaches the node's size cubed times |d|^2, which overflows
// float64 for meshes near 1e100); the division runs beside the square root, off the chain of
// dependent operations (scaling d first, or using d / |d|, would put a division before the 3x3
// product). Finite for |d| up to 2^20 node radii (winding_number skips beyond).
// d = p - q (the expansion's centre less the query point) and r2 = |d|^2, which the caller
// has computed to decide that the node is far.
template <typename T>
NIS_HD T fwn_far_field(const T* f, Vec3<T> d, T r2) {
    const T inv_r = T(1) / std::sqrt(r2), inv_r2 = T(1) / r2;
    const T inv_r3 = inv_r * inv_r * inv_r;
    const T* C = f + 7;
    const Vec3<T> Cd = make_vec3(C[0] * d.x + C[1] * d.y + C[2] * d.z, C[3] * d.x + C[4] * d.y + C[5] * d.z,
                                 C[6] * d.x + C[7] * d.y + C[8] * d.z);
    const T order1 = f[0] * d.x + f[1] * d.y + f[2] * d.z;
    const T order2 = (C[0] + C[4] + C[8]) - T(3) * dot(d, Cd * inv_r2);
    return (order1 + order2) * inv_r3;
}

// Farther than 2^20 radii a node's solid angle is below its area over 2^40 of its squared
// radius: left out, which also keeps fwn_far_field's products finite for any point.
constexpr float kFarFieldSkip2 = 1099511627776.0f;  // (2^20)^2

// Winding number of the mesh at q: ~1 inside a closed outward-oriented surface,
// ~0 outside, fractional near holes, summed over overlapping parts.
template <typename T>
NIS_HD T winding_number(const MeshView<T>& m, Vec3<T> q, T beta) {
    const T beta2 = beta * beta;
    T omega = T(0);
    int32_t stack[kBvhStackSize];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const int32_t idx = stack[--sp];
        const BvhNode& node = m.nodes[idx];
        for (int k = 0; k < kChildren; ++k) {
            const int32_t ref = node.child[k];
            if (ref == kEmptyChild) continue;
            const T* f = m.fwn + (static_cast<int64_t>(idx) * kChildren + k) * kFwnStride;
            const Vec3<T> d = make_vec3(f[3], f[4], f[5]) - q;
            const T d2 = length_sq(d), radius2 = f[6] * f[6];
            if (d2 > beta2 * radius2) {
                if (d2 < T(kFarFieldSkip2) * radius2) omega += fwn_far_field(f, d, d2);
            } else if (child_is_leaf(ref)) {
                const int32_t first = leaf_packet(ref) * kLanes, end = first + leaf_count(ref);
                for (int32_t t = first; t < end; ++t) {
                    Vec3<T> a, b, c;
                    load_triangle(m, t, a, b, c);
                    omega += triangle_solid_angle(q, a, b, c);
                }
            } else {
                stack[sp++] = ref;
            }
        }
    }
    return omega * T(0.07957747154594767);  // 1 / (4 pi)
}

}  // namespace nis
