// Closest point on a triangle (Ericson, Real-Time Collision Detection, 5.1.5),
// also returning the Voronoi region of the triangle that holds it: the
// pseudonormal sign needs to know whether it is the face, an edge or a vertex.
#pragma once
#include "common.h"

namespace nis {

enum TriRegion : int32_t {
    kRegionFace = 0,
    kRegionVertA = 1,
    kRegionVertB = 2,
    kRegionVertC = 3,
    kRegionEdgeAB = 4,
    kRegionEdgeBC = 5,
    kRegionEdgeCA = 6,
};

template <typename T>
struct ClosestOnTriangle {
    Vec3<T> point;
    T u, v, w;       // barycentric weights of a, b, c (point = u a + v b + w c)
    int32_t region;  // TriRegion
};

// Closest point on segment a-b, reported in the triangle's terms: `ia`, `ib` are
// the segment's vertex slots (0, 1, 2 = a, b, c) so the barycentrics and region
// come out right for whichever edge it is.
template <typename T>
NIS_HD ClosestOnTriangle<T> closest_on_edge(Vec3<T> p, Vec3<T> a, Vec3<T> b, int ia, int ib, int32_t edge_region) {
    const Vec3<T> ab = b - a;
    const T len2 = length_sq(ab);
    const T t = len2 > T(0) ? nis_clamp(dot(p - a, ab) / len2, T(0), T(1)) : T(0);
    T bary[3] = {T(0), T(0), T(0)};
    bary[ia] = T(1) - t;
    bary[ib] += t;
    int32_t region = edge_region;
    if (t <= T(0)) region = kRegionVertA + ia;
    else if (t >= T(1)) region = kRegionVertA + ib;
    return {a + ab * t, bary[0], bary[1], bary[2], region};
}

// Zero-area (collinear or collapsed) triangles: the answer lies on one of the
// three edges. Also the fallback if rounding leaves the face branch without a
// positive denominator.
template <typename T>
NIS_HD ClosestOnTriangle<T> closest_on_degenerate_triangle(Vec3<T> p, Vec3<T> a, Vec3<T> b, Vec3<T> c) {
    ClosestOnTriangle<T> best = closest_on_edge(p, a, b, 0, 1, kRegionEdgeAB);
    const ClosestOnTriangle<T> bc = closest_on_edge(p, b, c, 1, 2, kRegionEdgeBC);
    const ClosestOnTriangle<T> ca = closest_on_edge(p, c, a, 2, 0, kRegionEdgeCA);
    if (length_sq(bc.point - p) < length_sq(best.point - p)) best = bc;
    if (length_sq(ca.point - p) < length_sq(best.point - p)) best = ca;
    return best;
}

// Ratio |ab x ac|^2 / (|ab|^2 |ac|^2) = sin^2 of the angle at a below which the
// triangle is treated as a segment: Ericson's face branch divides by the area.
template <typename T> NIS_HD T degenerate_sin2() { return T(1e-20); }

template <typename T>
NIS_HD ClosestOnTriangle<T> closest_point_on_triangle(Vec3<T> p, Vec3<T> a, Vec3<T> b, Vec3<T> c) {
    const Vec3<T> ab = b - a, ac = c - a, ap = p - a;
    if (!(length_sq(cross(ab, ac)) > degenerate_sin2<T>() * length_sq(ab) * length_sq(ac)))
        return closest_on_degenerate_triangle(p, a, b, c);
    const T d1 = dot(ab, ap), d2 = dot(ac, ap);
    if (d1 <= T(0) && d2 <= T(0)) return {a, T(1), T(0), T(0), kRegionVertA};

    const Vec3<T> bp = p - b;
    const T d3 = dot(ab, bp), d4 = dot(ac, bp);
    if (d3 >= T(0) && d4 <= d3) return {b, T(0), T(1), T(0), kRegionVertB};

    const T vc = d1 * d4 - d3 * d2;
    if (vc <= T(0) && d1 >= T(0) && d3 <= T(0)) {
        const T den = d1 - d3;  // = |ab|^2 up to rounding; guarded against underflow
        const T t = den > T(0) ? d1 / den : T(0);
        return {a + ab * t, T(1) - t, t, T(0), kRegionEdgeAB};
    }

    const Vec3<T> cp = p - c;
    const T d5 = dot(ab, cp), d6 = dot(ac, cp);
    if (d6 >= T(0) && d5 <= d6) return {c, T(0), T(0), T(1), kRegionVertC};

    const T vb = d5 * d2 - d1 * d6;
    if (vb <= T(0) && d2 >= T(0) && d6 <= T(0)) {
        const T den = d2 - d6;  // = |ac|^2 up to rounding
        const T t = den > T(0) ? d2 / den : T(0);
        return {a + ac * t, T(1) - t, T(0), t, kRegionEdgeCA};
    }

    const T va = d3 * d6 - d5 * d4;
    if (va <= T(0) && (d4 - d3) >= T(0) && (d5 - d6) >= T(0)) {
        const T den = (d4 - d3) + (d5 - d6);  // = |bc|^2 up to rounding
        const T t = den > T(0) ? (d4 - d3) / den : T(0);
        return {b + (c - b) * t, T(0), T(1) - t, t, kRegionEdgeBC};
    }

    const T denom = va + vb + vc;
    if (!(denom > T(0))) return closest_on_degenerate_triangle(p, a, b, c);
    const T inv = T(1) / denom;
    const T v = vb * inv, w = vc * inv;
    return {a + ab * v + ac * w, T(1) - v - w, v, w, kRegionFace};
}

}  // namespace nis
