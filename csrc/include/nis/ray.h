// Ray-mesh intersection on the triangle BVH: the closest hit along o + t d, t >= 0.
#pragma once
#include "bvh.h"

namespace nis {

// A product rounded on its own. nvcc fuses a product into a neighbouring add (an FMA) where it
// can, and the host build is compiled with -ffp-contract=off: this keeps the device to the same
// rounding where the watertight test below needs it.
template <typename T>
NIS_HD T mul_rn(T a, T b) {
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(T) == 4) return __fmul_rn(a, b);
    else return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

template <typename T> NIS_HD T component(Vec3<T> v, int k) { return k == 0 ? v.x : (k == 1 ? v.y : v.z); }

// A ray in the frame of the watertight test (Woop, Benthin & Wald 2013): the dominant axis kz
// of its direction (of equal components the first), the two others, the origin's coordinates
// along the three, and the shear (sx, sy, sz) that maps the direction onto the z axis.
template <typename T>
struct ShearedRay {
    int kx, ky, kz;
    T ox, oy, oz;
    T sx, sy, sz;
};

template <typename T>
NIS_HD ShearedRay<T> sheared_ray(Vec3<T> o, Vec3<T> d) {
    const T ax = std::abs(d.x), ay = std::abs(d.y), az = std::abs(d.z);
    const int kz = ax >= ay ? (ax >= az ? 0 : 2) : (ay >= az ? 1 : 2), kx = (kz + 1) % 3, ky = (kx + 1) % 3;
    const T dz = component(d, kz);
    return {kx, ky, kz, component(o, kx), component(o, ky), component(o, kz),
            component(d, kx) / dz, component(d, ky) / dz, T(1) / dz};
}

// t of the hit of the ray with each triangle of a packet (both sides), or `miss` where there
// is none in [0, miss). Watertight: in the ray's sheared frame each edge's function depends
// on its two corners alone, rounded the same way in both triangles that share it (negated),
// and the sign test is inclusive, so a ray through an edge or a vertex hits at least one of
// its triangles; it cannot slip between them as with Moller-Trumbore, whose barycentrics of
// one edge round differently in its two triangles. The frame's axes pick rows of the
// field-major packet, so the lanes run as one vector loop. Unused lanes (zero area) miss.
template <typename T>
NIS_HD void packet_ray_t(const T* pk, const ShearedRay<T>& r, T miss, T* out) {
    // Rows of corner a's coordinates along kx, ky, kz; b's and c's lie 3 and 6 fields on.
    const T *x = pk + (kPacketA + r.kx) * kLanes, *y = pk + (kPacketA + r.ky) * kLanes,
            *z = pk + (kPacketA + r.kz) * kLanes;
    constexpr int kB = (kPacketB - kPacketA) * kLanes, kC = (kPacketC - kPacketA) * kLanes;
    NIS_LANES
    for (int k = 0; k < kLanes; ++k) {
        const T az = z[k] - r.oz, bz = z[kB + k] - r.oz, cz = z[kC + k] - r.oz;
        const T ax = (x[k] - r.ox) - mul_rn(r.sx, az), ay = (y[k] - r.oy) - mul_rn(r.sy, az);
        const T bx = (x[kB + k] - r.ox) - mul_rn(r.sx, bz), by = (y[kB + k] - r.oy) - mul_rn(r.sy, bz);
        const T cx = (x[kC + k] - r.ox) - mul_rn(r.sx, cz), cy = (y[kC + k] - r.oy) - mul_rn(r.sy, cz);
        const T u = mul_rn(cx, by) - mul_rn(cy, bx);  // edge bc
        const T v = mul_rn(ax, cy) - mul_rn(ay, cx);  // edge ca
        const T w = mul_rn(bx, ay) - mul_rn(by, ax);  // edge ab
        const bool mixed = ((u < T(0)) | (v < T(0)) | (w < T(0))) & ((u > T(0)) | (v > T(0)) | (w > T(0)));
        const T det = u + v + w;  // 0: the ray lies in the triangle's plane, or the triangle is degenerate
        const T t = (u * az + v * bz + w * cz) * r.sz / det;
        out[k] = (!mixed & (det != T(0)) & (t >= T(0)) & (t < miss)) ? t : miss;
    }
}

// Entry t of the ray into each child box of the node, clipped to [0, t_max); t_max where it misses.
template <typename T>
NIS_HD void child_ray_entry(const BvhNode& n, Vec3<T> o, Vec3<T> inv_d, T t_max, T* out) {
    const T o3[3] = {o.x, o.y, o.z}, inv3[3] = {inv_d.x, inv_d.y, inv_d.z};
    NIS_LANES
    for (int k = 0; k < kChildren; ++k) {
        T t0 = T(0), t1 = t_max;
        for (int axis = 0; axis < 3; ++axis) {
            const T lo = (T(n.lo[axis][k]) - o3[axis]) * inv3[axis];
            const T hi = (T(n.hi[axis][k]) - o3[axis]) * inv3[axis];
            // 0 * inf is NaN: an axis-parallel ray whose origin lies on a slab plane
            // runs inside that plane, so the slab does not constrain t.
            const bool in_plane = !(lo == lo) | !(hi == hi);
            const T near = in_plane ? T(0) : (lo < hi ? lo : hi);
            // The far end moved out by the rounding of its two operations, so that a ray that
            // touches the box (through a corner of a triangle on its face) is not culled (Ize 2013).
            const T far = in_plane ? t_max : (lo < hi ? hi : lo) * (T(1) + T(4) * machine_eps<T>());
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
    const ShearedRay<T> ray = sheared_ray(o, d);
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
            T t_hit[kLanes];
            packet_ray_t(packet_at(m, leaf_packet(ref)), ray, best.t, t_hit);
            for (int k = 0; k < leaf_count(ref); ++k)
                if (t_hit[k] < best.t) best = {t_hit[k], leaf_packet(ref) * kLanes + k};
            continue;
        }
        const BvhNode& node = m.nodes[ref];
        T entry[kChildren];
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
            T entry[kChildren];
            child_ray_entry(node, a, inv_d, t_end, entry);
            for (int k = 0; k < kChildren; ++k)
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
