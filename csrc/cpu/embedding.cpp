// Whether the pseudonormal sign of a closed mesh equals its winding-number sign
// (MeshView::pseudonormal_exact): the mesh must not intersect itself, and every
// connected piece must have winding number 0 on its front side.
//
// Why that suffices: crossing a consistently oriented sheet against its normal
// raises the winding number by exactly 1. Along a piece (faces joined by shared
// edges; pieces that touch at a vertex only are separate) no other face crosses
// it, so the winding number on its front side is one integer all along it; when
// that is 0, the back side has 1, and the side of the closest point's
// pseudonormal is the sign.
//
// Every test here is conservative, and any doubt answers "not exact", which only
// sends the queries to the winding number. Triangles meet when they come within
// kRounding of each other (the BVH frame has coordinates below 2). Triangles
// without a common vertex that come within kApart are marked pseudonormal_unsafe:
// float32 closest points are only good to ~1e-6, and a query beside a sheet that
// thin could take the far side for the near one, with the opposite pseudonormal.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "nis/mesh_ops.h"
#include "nis/winding.h"

namespace nis {
namespace {

using V3 = Vec3<double>;
constexpr double kApart = 1.0 / 65536;
constexpr double kRounding = 1e-12;

// [lo, hi] of the projections of a triangle on an axis.
void project(const V3* t, V3 axis, double& lo, double& hi) {
    const double a = dot(t[0], axis), b = dot(t[1], axis), c = dot(t[2], axis);
    lo = std::min(a, std::min(b, c));
    hi = std::max(a, std::max(b, c));
}

bool separated_on(V3 axis, const V3* t1, const V3* t2, double margin) {
    const double len = length(axis);
    if (!(len > 0)) return false;
    double lo1, hi1, lo2, hi2;
    project(t1, axis, lo1, hi1);
    project(t2, axis, lo2, hi2);
    const double gap = margin * len;
    return hi1 < lo2 - gap || hi2 < lo1 - gap;
}

// Triangles with no vertex in common: apart when one of the separating-axis
// candidates separates them by more than `margin` (face normals, edge-edge
// cross products, and the in-plane edge normals for the coplanar case: a
// complete set for two triangles).
bool disjoint_triangles_apart(const V3* t1, const V3* t2, double margin) {
    const V3 e1[3] = {t1[1] - t1[0], t1[2] - t1[1], t1[0] - t1[2]};
    const V3 e2[3] = {t2[1] - t2[0], t2[2] - t2[1], t2[0] - t2[2]};
    const V3 n1 = cross(e1[0], e1[1]), n2 = cross(e2[0], e2[1]);
    if (separated_on(n1, t1, t2, margin) || separated_on(n2, t1, t2, margin)) return true;
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j)
            if (separated_on(cross(e1[i], e2[j]), t1, t2, margin)) return true;
        if (separated_on(cross(n1, e1[i]), t1, t2, margin) || separated_on(cross(n2, e2[i]), t1, t2, margin))
            return true;
    }
    return false;
}

// Strictly on one side of the plane through the origin with normal n (margin kRounding).
bool strictly_one_side(V3 n, V3 x, V3 y) {
    const double gap = kRounding * length(n);
    const double sx = dot(n, x), sy = dot(n, y);
    return (sx > gap && sy > gap) || (sx < -gap && sy < -gap);
}

// u within the cone spanned by b and c (all relative to the shared vertex, n = b x c), with a margin.
bool in_cone(V3 u, V3 b, V3 c, V3 n) {
    const double gap = kRounding * length(u) * length(n);
    return dot(cross(b, u), n) >= -gap && dot(cross(u, c), n) >= -gap;
}

// A corner angle with sine below 1e-6: the normal from its two edges is then too
// rough for the tests below (its direction error, ~eps / sine, passes their margins).
bool sliver_corner(V3 b, V3 c) { return !(length(cross(b, c)) > 1e-6 * length(b) * length(c)); }

// Triangles (0, b1, c1) and (0, b2, c2) sharing the vertex at the origin: apart
// when they meet nowhere else.
bool fan_triangles_apart(V3 b1, V3 c1, V3 b2, V3 c2) {
    if (sliver_corner(b1, c1) || sliver_corner(b2, c2)) return false;
    const V3 n1 = cross(b1, c1), n2 = cross(b2, c2);
    // One triangle strictly on one side of the other's plane: they meet at the origin only.
    if (strictly_one_side(n1, b2, c2) || strictly_one_side(n2, b1, c1)) return true;
    const V3 dir = cross(n1, n2);
    if (length(dir) > 1e-6 * length(n1) * length(n2)) {
        // Both cross each other's plane: they can only share the line through the origin
        // along dir, and do beyond the origin when dir (or -dir) lies in both cones.
        const V3 back = dir * -1.0;
        return !(in_cone(dir, b1, c1, n1) && in_cone(dir, b2, c2, n2)) &&
               !(in_cone(back, b1, c1, n1) && in_cone(back, b2, c2, n2));
    }
    // Nearly coplanar: apart when the plane through the normal and an edge e of one triangle
    // has the other triangle on its far side, touching it at most along the ray opposite e
    // (fans around a vertex have opposite triangles with opposite edges).
    const V3 sides[2][2] = {{b1, c1}, {b2, c2}};
    for (int a = 0; a < 2; ++a) {
        for (int k = 0; k < 2; ++k) {
            const V3 e = sides[a][k], side = cross(n1, e);
            const double gap = kRounding * length(side), own = dot(side, sides[a][1 - k]);
            if (!(std::abs(own) > gap)) continue;
            bool far_side = true;
            for (const V3& x : sides[1 - a]) {
                const double v = own > 0 ? dot(side, x) : -dot(side, x);  // > 0 on the side of triangle a
                far_side = far_side && (v < -gap || (v <= gap && dot(x, e) < 0));
            }
            if (far_side) return true;
        }
    }
    return false;
}

// Triangles (a, b, c1) and (a, b, c2) sharing the edge ab: apart when they meet only along it.
bool edge_triangles_apart(V3 a, V3 b, V3 c1, V3 c2) {
    if (sliver_corner(b - a, c1 - a) || sliver_corner(b - a, c2 - a)) return false;
    const V3 n1 = cross(b - a, c1 - a);
    const double off = dot(n1, c2 - a);
    if (std::abs(off) > kRounding * length(n1)) return true;  // c2 off the plane of the first
    // Coplanar: apart when c1 and c2 lie on opposite sides of the line ab.
    return dot(cross(b - a, c2 - a), n1) < -kRounding * length(n1) * length(b - a);
}

enum class Pair { kApart, kNear, kMeet };  // kNear: no common vertex, within kApart

// Each BVH-order triangle's bounding box and vertex indices, gathered once: most pairs that
// two nearby leaves offer are told apart by their boxes alone, before any triangle is read
// (the indices, read through face_ids, would be scattered reads of the input faces).
struct PairTester {
    const MeshView<double>& m;
    std::vector<double> box;     // [slot][lo xyz, hi xyz]
    std::vector<int32_t> index;  // [slot][3]

    PairTester(const MeshView<double>& view, const int32_t* faces)
        : m(view), box(static_cast<size_t>(view.num_slots) * 6), index(static_cast<size_t>(view.num_slots) * 3) {
#pragma omp parallel for schedule(static)
        for (int32_t s = 0; s < m.num_slots; ++s) {
            if (m.face_ids[s] < 0) continue;  // unused lanes are never paired
            V3 t[3];
            load_triangle(m, s, t[0], t[1], t[2]);
            double* b = box.data() + 6 * int64_t(s);
            b[0] = std::min(t[0].x, std::min(t[1].x, t[2].x));
            b[1] = std::min(t[0].y, std::min(t[1].y, t[2].y));
            b[2] = std::min(t[0].z, std::min(t[1].z, t[2].z));
            b[3] = std::max(t[0].x, std::max(t[1].x, t[2].x));
            b[4] = std::max(t[0].y, std::max(t[1].y, t[2].y));
            b[5] = std::max(t[0].z, std::max(t[1].z, t[2].z));
            for (int c = 0; c < 3; ++c) index[3 * int64_t(s) + c] = faces[3 * int64_t(m.face_ids[s]) + c];
        }
    }

    const double* box_of(int32_t s) const { return box.data() + 6 * int64_t(s); }

    // The boxes, grown by kApart, do not overlap. Then the triangles share no vertex (a shared
    // vertex lies in both boxes) and are kApart apart.
    bool boxes_apart(int32_t s1, int32_t s2) const {
        const double* b1 = box_of(s1);
        const double* b2 = box_of(s2);
        bool apart = false;
        for (int k = 0; k < 3; ++k) apart |= (b1[k + 3] < b2[k] - kApart) | (b2[k + 3] < b1[k] - kApart);
        return apart;
    }

    Pair classify(int32_t s1, int32_t s2) const {
        if (boxes_apart(s1, s2)) return Pair::kApart;
        V3 t1[3], t2[3];
        load_triangle(m, s1, t1[0], t1[1], t1[2]);
        load_triangle(m, s2, t2[0], t2[1], t2[2]);
        const int32_t* i1 = index.data() + 3 * int64_t(s1);
        const int32_t* i2 = index.data() + 3 * int64_t(s2);
        int shared = 0, c1 = -1, c2 = -1;  // corners of the (last) shared vertex
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j)
                if (i1[i] == i2[j]) {
                    ++shared;
                    c1 = i;
                    c2 = j;
                }
        const auto verdict = [](bool apart) { return apart ? Pair::kApart : Pair::kMeet; };
        if (shared == 0) {
            if (disjoint_triangles_apart(t1, t2, kApart)) return Pair::kApart;
            return disjoint_triangles_apart(t1, t2, kRounding) ? Pair::kNear : Pair::kMeet;
        }
        if (shared == 1) {
            const V3 o = t1[c1];
            return verdict(fan_triangles_apart(t1[(c1 + 1) % 3] - o, t1[(c1 + 2) % 3] - o, t2[(c2 + 1) % 3] - o,
                                               t2[(c2 + 2) % 3] - o));
        }
        if (shared == 2) {
            // The unshared corners; the shared edge runs between the other two of t1.
            int u1 = 0, u2 = 0;
            for (int i = 0; i < 3; ++i) {
                bool in2 = false, in1 = false;
                for (int j = 0; j < 3; ++j) {
                    in2 = in2 || i1[i] == i2[j];
                    in1 = in1 || i2[i] == i1[j];
                }
                if (!in2) u1 = i;
                if (!in1) u2 = i;
            }
            return verdict(edge_triangles_apart(t1[(u1 + 1) % 3], t1[(u1 + 2) % 3], t1[u1], t2[u2]));
        }
        return Pair::kMeet;  // the same three vertices twice
    }
};

// Pair tests allowed per face. Every face at a vertex of degree N meets the other N - 1 there
// (N^2 tests: a fan-triangulated cap of many faces would take quadratic time); past the budget
// the answer is "not exact". Ordinary meshes need a small fraction of it.
constexpr int64_t kPairTestsPerFace = 64;

// No two triangles meet except where they share vertices (a leaf against every leaf whose
// box comes within kApart of its own, each pair once); marks the kNear ones pseudonormal_unsafe.
bool embedded(MeshBvhHost& h, const int32_t* faces) {
    const MeshView<double> m = h.view<double>();
    uint8_t* unsafe = h.pseudonormal_unsafe.data();
    const PairTester tester{m, faces};
    const int32_t packets = m.num_slots / kLanes;
    std::atomic<bool> apart{true};
    // Taken from in batches: a shared counter touched by every test would have the threads
    // trade its cache line.
    constexpr int64_t kBatch = 256;
    std::atomic<int64_t> budget{kPairTestsPerFace * h.num_faces};
#pragma omp parallel for schedule(dynamic, 16)
    for (int32_t p = 0; p < packets; ++p) {
        if (!apart.load(std::memory_order_relaxed)) continue;
        int64_t tests = 0;  // made since the last batch was taken
        int count = 0;
        double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
        for (int lane = 0; lane < kLanes; ++lane) {
            if (m.face_ids[p * kLanes + lane] < 0) break;
            ++count;
            const double* b = tester.box_of(p * kLanes + lane);
            for (int k = 0; k < 3; ++k) {
                lo[k] = std::min(lo[k], b[k] - kApart);
                hi[k] = std::max(hi[k], b[k + 3] + kApart);
            }
        }
        // A fixed stack (a node's kChildren children on top of kChildren - 1 pending per level: the
        // traversal bound): nothing is allocated, so nothing can throw inside the parallel loop.
        int32_t stack[kBvhStackSize];
        int sp = 0;
        stack[sp++] = 0;
        while (sp > 0 && apart.load(std::memory_order_relaxed)) {
            const int32_t ref = stack[--sp];
            if (child_is_leaf(ref)) {
                const int32_t q = leaf_packet(ref);
                if (q < p) continue;  // that pair is tested from q's side
                for (int i = 0; i < count; ++i)
                    for (int j = q == p ? i + 1 : 0; j < leaf_count(ref); ++j) {
                        const int32_t s1 = p * kLanes + i, s2 = q * kLanes + j;
                        const Pair pair = tester.classify(s1, s2);
                        if (++tests == kBatch) {
                            if (budget.fetch_sub(tests, std::memory_order_relaxed) < tests) apart = false;
                            tests = 0;
                        }
                        if (pair == Pair::kMeet) apart = false;
                        if (pair == Pair::kNear) {
#pragma omp atomic write
                            unsafe[s1] = 1;
#pragma omp atomic write
                            unsafe[s2] = 1;
                        }
                    }
                continue;
            }
            const BvhNode& n = m.nodes[ref];
            for (int k = 0; k < kChildren; ++k) {
                bool overlap = n.child[k] != kEmptyChild;
                for (int axis = 0; axis < 3; ++axis)
                    overlap &= (n.lo[axis][k] <= hi[axis]) & (n.hi[axis][k] >= lo[axis]);
                if (overlap) stack[sp++] = n.child[k];
            }
        }
        if (budget.fetch_sub(tests, std::memory_order_relaxed) < tests) apart = false;
    }
    return apart;
}

// Winding number 0 just in front of every piece, probed off the middle of its largest
// triangle at a distance that the closest-point query confirms is surface-free.
bool front_sides_at_zero(const MeshView<double>& m, const std::vector<int64_t>& face_piece) {
    const int64_t nf = static_cast<int64_t>(face_piece.size());
    std::vector<int32_t> largest(nf, -1);  // per piece (its root face): the slot of its largest triangle
    std::vector<double> area(nf, 0.0);
    for (int32_t s = 0; s < m.num_slots; ++s) {
        if (m.face_ids[s] < 0) continue;
        V3 a, b, c;
        load_triangle(m, s, a, b, c);
        const int64_t root = face_piece[m.face_ids[s]];
        const double twice_area = length(cross(b - a, c - a));
        if (twice_area > area[root]) {
            area[root] = twice_area;
            largest[root] = s;
        }
    }
    std::atomic<bool> zero{true};
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t root = 0; root < nf; ++root) {
        const int32_t s = largest[root];
        if (s < 0 || !zero.load(std::memory_order_relaxed)) continue;
        V3 a, b, c;
        load_triangle(m, s, a, b, c);
        const V3 centre = (a + b + c) * (1.0 / 3.0), n = cross(b - a, c - a) * (1.0 / area[root]);
        bool probed = false;
        for (double offset = 1e-3 * std::sqrt(area[root]); offset > 1e-9 && !probed; offset *= 0.125) {
            const V3 q = centre + n * offset;
            const double dist = std::sqrt(closest_point_on_mesh(m, q, s).dist_sq);
            if (dist < offset * (1 - 1e-6)) continue;  // another piece is nearer: come closer
            probed = true;
            if (std::abs(winding_number(m, q, 2.0)) > 0.25) zero = false;
        }
        if (!probed) zero = false;
    }
    return zero;
}

}  // namespace

bool pseudonormal_sign_is_exact(MeshBvhHost& h, const int32_t* faces, const std::vector<int64_t>& face_piece) {
    return h.closed && embedded(h, faces) && front_sides_at_zero(h.view<double>(), face_piece);
}

}  // namespace nis
