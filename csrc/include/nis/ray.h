// Ray-mesh intersection on the triangle BVH: the closest hit along o + t d, t >= 0.
#pragma once
#include "bvh.h"

namespace nis {

// t of the hit of o + t d with triangle abc (both sides), or `miss` if none in [0, miss).
// Moller & Trumbore 1997; the barycentric tests are inclusive so edges are hit.
template <typename T>
NIS_HD T ray_triangle(Vec3<T> o, Vec3<T> d, Vec3<T> a, Vec3<T> b, Vec3<T> c, T miss) {
    const Vec3<T> e1 = b - a, e2 = c - a;
    const Vec3<T> pv = cross(d, e2);
    const T det = dot(e1, pv);
    if (det == T(0)) return miss;  // parallel to the plane, or a degenerate triangle
    const T inv = T(1) / det;
    const Vec3<T> tv = o - a;
    const T u = dot(tv, pv) * inv;
    if (u < T(0) || u > T(1)) return miss;
    const Vec3<T> qv = cross(tv, e1);
    const T v = dot(d, qv) * inv;
    if (v < T(0) || u + v > T(1)) return miss;
    const T t = dot(e2, qv) * inv;
    return (t >= T(0) && t < miss) ? t : miss;
}

// Entry t of the ray into each child box of the node, clipped to [0, t_max); t_max where it misses.
template <typename T>
NIS_HD void child_ray_entry(const BvhNode& n, Vec3<T> o, Vec3<T> inv_d, T t_max, T* out) {
    const T o3[3] = {o.x, o.y, o.z}, inv3[3] = {inv_d.x, inv_d.y, inv_d.z};
    NIS_LANES
    for (int k = 0; k < kWidth; ++k) {
        T t0 = T(0), t1 = t_max;
        for (int axis = 0; axis < 3; ++axis) {
            const T lo = (T(n.lo[axis][k]) - o3[axis]) * inv3[axis];
            const T hi = (T(n.hi[axis][k]) - o3[axis]) * inv3[axis];
            // 0 * inf is NaN: an axis-parallel ray whose origin lies on a slab plane
            // runs inside that plane, so the slab does not constrain t.
            const bool in_plane = !(lo == lo) | !(hi == hi);
            const T near = in_plane ? T(0) : (lo < hi ? lo : hi), far = in_plane ? t_max : (lo < hi ? hi : lo);
            t0 = near > t0 ? near : t0;
            t1 = far < t1 ? far : t1;
        }
        out[k] = t0 <= t1 ? t0 : t_max;
    }
}

template <typename T>
struct RayHit {
    T t;          // inf-like `t_max` when nothing was hit
    int32_t tri;  // BVH-order triangle, -1 on a miss
};

template <typename T>
NIS_HD RayHit<T> ray_mesh(const MeshView<T>& m, Vec3<T> o, Vec3<T> d, T t_max) {
    // An axis-parallel ray gets an infinite reciprocal: the slab test handles it.
    const Vec3<T> inv_d = make_vec3(T(1) / d.x, T(1) / d.y, T(1) / d.z);
    RayHit<T> best{t_max, -1};
    int32_t stack_ref[kBvhStackSize];
    T stack_t[kBvhStackSize];
    int sp = 0;
    stack_ref[sp] = 0;
    stack_t[sp++] = T(0);
    while (sp > 0) {
        --sp;
        if (!(stack_t[sp] < best.t)) continue;
        const int32_t ref = stack_ref[sp];
        if (child_is_leaf(ref)) {
            const int32_t first = leaf_packet(ref) * kLanes, end = first + leaf_count(ref);
            for (int32_t t = first; t < end; ++t) {
                Vec3<T> a, b, c;
                load_triangle(m, t, a, b, c);
                const T th = ray_triangle(o, d, a, b, c, best.t);
                if (th < best.t) best = {th, t};
            }
            continue;
        }
        const BvhNode& node = m.nodes[ref];
        T entry[kWidth];
        child_ray_entry(node, o, inv_d, best.t, entry);
        push_children_near_first(node, entry, best.t, stack_ref, stack_t, sp);
    }
    return best;
}

// Change of the winding number from a to b on a closed mesh: each triangle the
// segment crosses changes it by one, down when leaving through its front side.
// Sets `clear` to false when a crossing lies too near an edge, a vertex, an end
// of the segment, or is too grazing to count with certainty (rounding could
// count it twice or miss it); the caller then evaluates the winding number.
template <typename T>
NIS_HD int32_t segment_winding_change(const MeshView<T>& m, Vec3<T> a, Vec3<T> b, bool& clear) {
    const T unit = machine_eps<T>();
    const Vec3<T> d = b - a;
    const Vec3<T> inv_d = make_vec3(T(1) / d.x, T(1) / d.y, T(1) / d.z);
    const T t_end = T(1) + T(256) * unit;  // boxes touching the segment's end count too
    int32_t change = 0;
    clear = true;
    int32_t stack[kBvhStackSize];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const int32_t ref = stack[--sp];
        if (!child_is_leaf(ref)) {
            const BvhNode& node = m.nodes[ref];
            T entry[kWidth];
            child_ray_entry(node, a, inv_d, t_end, entry);
            for (int k = 0; k < kWidth; ++k)
                if (entry[k] < t_end && node.child[k] != kEmptyChild) stack[sp++] = node.child[k];
            continue;
        }
        const int32_t first = leaf_packet(ref) * kLanes, end = first + leaf_count(ref);
        for (int32_t t = first; t < end; ++t) {
            Vec3<T> p0, p1, p2;
            load_triangle(m, t, p0, p1, p2);
            const Vec3<T> e1 = p1 - p0, e2 = p2 - p0;
            const Vec3<T> n = cross(e1, e2);
            const Vec3<T> tv = a - p0;
            const T det = -dot(d, n);  // Moller-Trumbore's e1 . (d x e2), written with the normal
            // Bound on the rounding of u, v, s times |det| (and of det): each is a triple product of
            // differences of exact inputs (relative error <= unit each), rounded to within a few
            // units of the product of the three lengths, all <= L. 256 units leaves a wide margin
            // (the crossings this rejects are the ones it cannot place on one side of an edge).
            const T longest = nis_max(nis_max(length(tv), length(d)), nis_max(length(e1), length(e2)));
            const T tol_num = T(256) * unit * longest * longest * longest;
            if (!(std::abs(det) > tol_num)) {  // grazing, parallel or degenerate
                if (length_sq(n) == T(0)) continue;  // zero-area triangle: contributes nothing
                // Near the plane, the segment may or may not cross: let the caller decide another way.
                if (std::abs(dot(tv, n)) <= tol_num + std::abs(dot(d, n))) clear = false;
                continue;
            }
            const T inv = T(1) / det;
            const T u = dot(tv, cross(d, e2)) * inv;
            const Vec3<T> qv = cross(tv, e1);
            const T v = dot(d, qv) * inv;
            const T s = dot(e2, qv) * inv;  // where along the segment it crosses the plane, in [0, 1]
            const T tol = tol_num / std::abs(det);
            const bool inside_strict = u > tol && v > tol && u + v < T(1) - tol && s > tol && s < T(1) - tol;
            const bool outside_strict = u < -tol || v < -tol || u + v > T(1) + tol || s < -tol || s > T(1) + tol;
            if (inside_strict) change += dot(d, n) > T(0) ? -1 : 1;
            else if (!outside_strict) clear = false;
        }
    }
    return change;
}

}  // namespace nis
