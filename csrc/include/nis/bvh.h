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
// Leaf: a = first triangle (BVH order, a multiple of kLanes), b = -(number of triangles) in [-kLanes, -1].
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

// Triangles are stored in packets of kLanes, one packet per leaf, field-major
// ([field][lane]): a leaf's distance tests are then one loop over the lanes
// that the host compiler turns into vector instructions, and a short loop in a
// CUDA thread. Triangle t (BVH order) is lane t % kLanes of packet t / kLanes;
// unused lanes hold a zero-area triangle at a vertex of the leaf's first one
// (never strictly closer than that triangle, zero solid angle, never hit).
constexpr int kLanes = 4;
enum PacketField : int {
    kPacketA = 0,        // corners a, b, c (3 each)
    kPacketB = 3,
    kPacketC = 6,
    kPacketNormal = 9,   // unit normal (0 for a degenerate triangle)
    kPacketBaryV = 12,   // g_v, g_w: the barycentrics of b and c of the projection of p are (p - a) . g
    kPacketBaryW = 15,
    kPacketInvAB = 18,   // 1 / |b - a|^2, 1 / |c - a|^2, 1 / |c - b|^2 (0 for a zero-length edge)
    kPacketInvAC = 19,
    kPacketInvBC = 20,
    kPacketFaceMax = 21,  // v + w <= this for a projection inside: 1, or -1 when the face cannot hold the closest point
    kPacketFields = 22,
};
constexpr int kPacketSize = kPacketFields * kLanes;

// Everything a query reads, as raw pointers (host or device memory alike).
template <typename T>
struct MeshView {
    const BvhNode* nodes;
    const T* packets;           // [num_slots / kLanes, kPacketFields, kLanes]
    const int32_t* face_ids;    // [num_slots]: original face index of each BVH-order triangle, -1 in unused lanes
    const T* pseudonormals;     // [num_slots, kPseudonormalSlots, 3]
    const T* fwn;               // [num_nodes, kFwnStride]
    int32_t num_nodes;
    int32_t num_slots;
    bool closed;  // every edge shared by exactly two faces, in opposite directions
    // The BVH holds the mesh times `scale`, a power of two that brings its largest
    // coordinate magnitude to [1, 2): exact, and it keeps the fourth powers in the triangle maths away
    // from float underflow/overflow at tiny or huge coordinates. Queries scale in and out.
    T scale, inv_scale;
};

template <typename T>
NIS_HD const T* packet_of(const MeshView<T>& m, int32_t first_slot) {
    return m.packets + static_cast<int64_t>(first_slot / kLanes) * kPacketSize;
}

template <typename T>
NIS_HD void load_triangle(const MeshView<T>& m, int32_t t, Vec3<T>& a, Vec3<T>& b, Vec3<T>& c) {
    const T* v = packet_of(m, t) + t % kLanes;
    a = make_vec3(v[(kPacketA + 0) * kLanes], v[(kPacketA + 1) * kLanes], v[(kPacketA + 2) * kLanes]);
    b = make_vec3(v[(kPacketB + 0) * kLanes], v[(kPacketB + 1) * kLanes], v[(kPacketB + 2) * kLanes]);
    c = make_vec3(v[(kPacketC + 0) * kLanes], v[(kPacketC + 1) * kLanes], v[(kPacketC + 2) * kLanes]);
}

// Squared distance from q (relative to the segment's start) to the segment 0-u.
template <typename T>
NIS_HD T segment_distance_sq(Vec3<T> q, Vec3<T> u, T inv_len_sq) {
    const T t = nis_clamp(dot(q, u) * inv_len_sq, T(0), T(1));
    return length_sq(q - u * t);
}

// Squared distance from p to each triangle of a packet, without branches: the
// distance to the plane when p projects inside the face, else the nearest of
// the three edges. Used to pick the closest triangle; its closest point and
// region then come from closest_point_on_triangle.
template <typename T>
NIS_HD void packet_distance_sq(const T* pk, Vec3<T> p, T* out) {
    for (int k = 0; k < kLanes; ++k) {
        const T* f = pk + k;
        const auto field3 = [f](int i) { return make_vec3(f[i * kLanes], f[(i + 1) * kLanes], f[(i + 2) * kLanes]); };
        const Vec3<T> a = field3(kPacketA), b = field3(kPacketB), c = field3(kPacketC);
        const Vec3<T> ap = p - a;
        const T v = dot(ap, field3(kPacketBaryV)), w = dot(ap, field3(kPacketBaryW));
        const T h = dot(ap, field3(kPacketNormal));
        const T edges = nis_min(nis_min(segment_distance_sq(ap, b - a, f[kPacketInvAB * kLanes]),
                                        segment_distance_sq(ap, c - a, f[kPacketInvAC * kLanes])),
                                segment_distance_sq(p - b, c - b, f[kPacketInvBC * kLanes]));
        const bool inside = (v >= T(0)) & (w >= T(0)) & (v + w <= f[kPacketFaceMax * kLanes]);
        out[k] = inside ? h * h : edges;
    }
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
// Leaves are searched by packet distance; the winner's closest point and region
// are computed once at the end.
template <typename T>
NIS_HD ClosestHit<T> closest_point_on_mesh(const MeshView<T>& m, Vec3<T> p, int32_t hint) {
    // Seeding with a real triangle (the hint, else the first) also keeps `tri` valid when
    // every box distance overflows to inf for a far-away point: the result is then that
    // triangle, never an index of -1.
    int32_t best_tri = hint >= 0 ? hint : 0;
    T best_d2;
    {
        T d2[kLanes];
        packet_distance_sq(packet_of(m, best_tri), p, d2);
        best_d2 = d2[best_tri % kLanes];
    }
    int32_t stack_node[kBvhStackSize];
    T stack_dist[kBvhStackSize];
    int sp = 0;
    stack_node[sp] = 0;
    stack_dist[sp++] = box_distance_sq(m.nodes[0], p);
    while (sp > 0) {
        --sp;
        if (stack_dist[sp] >= best_d2) continue;  // a closer triangle was found since the push
        const BvhNode node = m.nodes[stack_node[sp]];
        if (bvh_is_leaf(node)) {
            T d2[kLanes];
            packet_distance_sq(packet_of(m, node.a), p, d2);
            for (int k = 0; k < -node.b; ++k) {
                if (d2[k] < best_d2) {
                    best_d2 = d2[k];
                    best_tri = node.a + k;
                }
            }
            continue;
        }
        push_children_near_first(stack_node, stack_dist, sp, node.a, node.b, box_distance_sq(m.nodes[node.a], p),
                                 box_distance_sq(m.nodes[node.b], p), best_d2);
    }
    Vec3<T> a, b, c;
    load_triangle(m, best_tri, a, b, c);
    const ClosestOnTriangle<T> r = closest_point_on_triangle(p, a, b, c);
    return {length_sq(r.point - p), r.point, best_tri, r.region};
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
