// Triangle BVH shared by the CPU and CUDA backends: the flat node layout, the
// view the queries read, and the closest-point traversal (nearest child first,
// short fixed stack, boxes re-checked against the best distance when popped).
//
// Node boxes are float32 in both precisions, rounded outward at build time so
// they contain the float64 triangles exactly: the float64 queries then prune
// with exact bounds while the nodes stay 32 bytes.
#pragma once
#include "common.h"
#include "triangle.h"

namespace nis {

// The build caps the depth at kBvhMaxDepth (median splits below it), so a
// traversal stack of kBvhStackSize (one slot per level + the sibling) never overflows.
constexpr int kBvhMaxDepth = 56;
constexpr int kBvhStackSize = 64;

// Two 16-byte halves. Inner node: a = left child, b = right child (both > 0).
// Leaf: a = first triangle (BVH order), b = -(number of triangles) (< 0).
struct BvhNode {
    float lo[3];
    int32_t a;
    float hi[3];
    int32_t b;
};

NIS_HD bool bvh_is_leaf(const BvhNode& n) { return n.b < 0; }

// Per-triangle pseudonormal slots, indexed by TriRegion (face, vertices a b c, edges ab bc ca).
constexpr int kPseudonormalSlots = 7;
// Per-node winding-number expansion: area vector N (3), centre (3), radius (1), second moment C (9).
constexpr int kFwnStride = 16;

// Everything a query reads, as raw pointers (host or device memory alike).
template <typename T>
struct MeshView {
    const BvhNode* nodes;
    const T* tris;              // [num_tris, 3 corners, 3], BVH order
    const int32_t* face_ids;    // [num_tris]: original face index of each BVH-order triangle
    const T* pseudonormals;     // [num_tris, kPseudonormalSlots, 3]
    const T* fwn;               // [num_nodes, kFwnStride]
    int32_t num_nodes;
    int32_t num_tris;
    bool closed;  // every edge shared by exactly two faces, in opposite directions
    // The BVH holds the mesh times `scale`, a power of two that brings its largest
    // coordinate magnitude to [1, 2): exact, and it keeps the fourth powers in the triangle maths away
    // from float underflow/overflow at tiny or huge coordinates. Queries scale in and out.
    T scale, inv_scale;
};

template <typename T>
NIS_HD void load_triangle(const MeshView<T>& m, int32_t t, Vec3<T>& a, Vec3<T>& b, Vec3<T>& c) {
    const T* v = m.tris + 9 * static_cast<int64_t>(t);
    a = load3(v, 0);
    b = load3(v, 1);
    c = load3(v, 2);
}

// Squared distance from p to the node's box (0 inside).
template <typename T>
NIS_HD T box_distance_sq(const BvhNode& n, Vec3<T> p) {
    const T dx = nis_max(nis_max(T(n.lo[0]) - p.x, p.x - T(n.hi[0])), T(0));
    const T dy = nis_max(nis_max(T(n.lo[1]) - p.y, p.y - T(n.hi[1])), T(0));
    const T dz = nis_max(nis_max(T(n.lo[2]) - p.z, p.z - T(n.hi[2])), T(0));
    return dx * dx + dy * dy + dz * dz;
}

template <typename T>
struct ClosestHit {
    T dist_sq;       // squared distance to the closest point
    Vec3<T> point;   // closest point on the mesh
    int32_t tri;     // BVH-order triangle index
    int32_t region;  // TriRegion of the closest point on that triangle
};

// Push both children of an inner node whose keys (squared box distance, or ray
// entry t) are below `bound`, the far one first so the near one is popped next.
template <typename T>
NIS_HD void push_children_near_first(int32_t* stack_node, T* stack_key, int& sp, int32_t left, int32_t right,
                                     T key_left, T key_right, T bound) {
    const bool left_first = key_left <= key_right;
    const int32_t near_child = left_first ? left : right, far_child = left_first ? right : left;
    const T near_key = left_first ? key_left : key_right, far_key = left_first ? key_right : key_left;
    if (far_key < bound) {
        stack_node[sp] = far_child;
        stack_key[sp++] = far_key;
    }
    if (near_key < bound) {
        stack_node[sp] = near_child;
        stack_key[sp++] = near_key;
    }
}

// Closest point on the mesh to p. `hint` (a BVH-order triangle, or -1) seeds the
// search: its distance is an upper bound that prunes the traversal from the start
// (the CPU loop passes the previous query's triangle; queries run in Morton order).
template <typename T>
NIS_HD ClosestHit<T> closest_point_on_mesh(const MeshView<T>& m, Vec3<T> p, int32_t hint) {
    // Seeding with a real triangle (the hint, else the first) also keeps `tri` valid when
    // every box distance overflows to inf for a far-away point: the result is then that
    // triangle, never an index of -1.
    const int32_t seed = hint >= 0 ? hint : 0;
    Vec3<T> a, b, c;
    load_triangle(m, seed, a, b, c);
    const ClosestOnTriangle<T> r = closest_point_on_triangle(p, a, b, c);
    ClosestHit<T> best{length_sq(r.point - p), r.point, seed, r.region};
    int32_t stack_node[kBvhStackSize];
    T stack_dist[kBvhStackSize];
    int sp = 0;
    stack_node[sp] = 0;
    stack_dist[sp++] = box_distance_sq(m.nodes[0], p);
    while (sp > 0) {
        --sp;
        if (stack_dist[sp] >= best.dist_sq) continue;  // a closer triangle was found since the push
        const BvhNode node = m.nodes[stack_node[sp]];
        if (bvh_is_leaf(node)) {
            const int32_t end = node.a - node.b;
            for (int32_t t = node.a; t < end; ++t) {
                Vec3<T> a, b, c;
                load_triangle(m, t, a, b, c);
                const ClosestOnTriangle<T> r = closest_point_on_triangle(p, a, b, c);
                const T d2 = length_sq(r.point - p);
                if (d2 < best.dist_sq) best = {d2, r.point, t, r.region};
            }
            continue;
        }
        push_children_near_first(stack_node, stack_dist, sp, node.a, node.b, box_distance_sq(m.nodes[node.a], p),
                                 box_distance_sq(m.nodes[node.b], p), best.dist_sq);
    }
    return best;
}

// Sign of p relative to the surface at its closest point, by the angle-weighted
// pseudonormal of the feature (face, edge, vertex) holding that point
// (Baerentzen & Aanaes 2005): -1 inside, +1 outside. Right for closed,
// consistently oriented manifold meshes only.
template <typename T>
NIS_HD T pseudonormal_sign(const MeshView<T>& m, Vec3<T> p, const ClosestHit<T>& hit) {
    const Vec3<T> n = load3(m.pseudonormals, static_cast<int64_t>(hit.tri) * kPseudonormalSlots + hit.region);
    return dot(p - hit.point, n) < T(0) ? T(-1) : T(1);
}

}  // namespace nis
