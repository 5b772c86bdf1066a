// Triangle BVH shared by the CPU and CUDA backends: the flat node layout, the
// view the queries read, and the closest-point traversal (nearest child first,
// short fixed stack, boxes re-checked against the best distance when popped).
//
// The tree is 8-wide: a node holds the boxes of its (up to) kChildren children,
// axis-major, so one loop computes all eight box tests (vector code on the CPU: with
// AVX2, one instruction a step in float32; against 4-wide, a third fewer levels);
// a leaf is one packet of kLanes triangles, tested the same way. Each child has
// an axis-aligned box and an oriented one; its distance key is the larger of the two
// (on the CPU; CUDA threads test the axis-aligned one only: kTestOrientedBoxes).
//
// Axis-aligned boxes are float32 in both precisions, rounded outward at build time
// so they contain the float64 triangles exactly: the float64 queries then prune
// with exact bounds. Oriented boxes, packets and expansions come in each precision.
#pragma once
#include "common.h"
#include "triangle.h"

namespace nis {

constexpr int kChildren = 8;  // children per node
constexpr int kLanes = 4;  // triangles per leaf packet (see PacketField)
// The binary build caps its depth at kBvhMaxDepth (median splits below it); the wide
// tree takes two binary levels or more per level, so it has at most kWideMaxDepth. A
// traversal keeps at most kChildren - 1 pending siblings per level plus one node's children,
// so a stack of kBvhStackSize entries never overflows.
constexpr int kBvhMaxDepth = 56;
constexpr int kWideMaxDepth = kBvhMaxDepth / 2 + 1;
constexpr int kBvhStackSize = (kChildren - 1) * kWideMaxDepth + kChildren;

// A child reference: >= 0 an inner node, kEmptyChild nothing (an empty box), otherwise a
// leaf, ~(its last triangle slot): the packet is slot / kLanes and the lanes up to slot % kLanes are used.
constexpr int32_t kEmptyChild = INT32_MIN;
NIS_HD bool child_is_leaf(int32_t ref) { return ref < 0 && ref != kEmptyChild; }
NIS_HD int32_t leaf_ref(int32_t packet, int32_t count) { return ~(packet * kLanes + count - 1); }
NIS_HD int32_t leaf_packet(int32_t ref) { return ~ref / kLanes; }
NIS_HD int32_t leaf_count(int32_t ref) { return ~ref % kLanes + 1; }

// 256 bytes. Empty children have an empty box (lo = +inf, hi = -inf): every test misses it.
struct BvhNode {
    float lo[3][kChildren];
    float hi[3][kChildren];
    int32_t child[kChildren];
    int32_t unused[kChildren];  // pads the node to 256 bytes
};

// Pseudonormals per triangle, indexed by TriRegion (face, vertices a b c, edges ab bc ca).
constexpr int kPseudonormalSlots = 7;
// Per-child winding-number expansion: area vector N (3), centre (3), radius (1), second moment C (9).
constexpr int kFwnStride = 16;

// Triangles are stored in packets of kLanes, one packet per leaf, field-major
// ([field][lane]): a leaf's distance tests are then one loop over the lanes
// that the host compiler turns into vector instructions, and a short loop in a
// CUDA thread. Triangle t (BVH order) is lane t % kLanes of packet t / kLanes;
// unused lanes hold a zero-area triangle at a corner of the leaf's first one
// (zero solid angle, never hit), so the lane loops may run over all of them.
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

// Oriented box of each child (kBoxSize values): centre (3), axes u v n (3 each, n along
// the mean normal of the triangles inside), half extents (3), one spare. Far from a
// curved surface, an axis-aligned box admits every leaf within its diagonal of the sphere
// touching the surface; a thin oriented box rejects almost all of them. A child's key is
// the larger of its two box distances.
constexpr int kBoxSize = 16;

// Everything a query reads, as raw pointers (host or device memory alike); filled by
// make_mesh_view (mesh_ops.h) only.
template <typename T>
struct MeshView {
    const BvhNode* nodes;
    const T* packets;           // [num_slots / kLanes, kPacketFields, kLanes]
    const T* child_boxes;       // [num_nodes, kBoxSize, kChildren]: oriented box of each child
    const int32_t* face_ids;    // [num_slots]: original face index of each BVH-order triangle, -1 in unused lanes
    // [num_slots, kPseudonormalSlots]: the row of pseudonormal_table of each TriRegion of each triangle
    const int32_t* pseudonormal_ids;
    const T* pseudonormal_table;  // [rows, 3]: unit pseudonormals of the faces, vertices and edges
    // [num_slots]: 1 where the pseudonormal sign near the triangle is unsafe, so the winding
    // number decides there: it touches an unsafe vertex (unsafe_vertices in cpu/pseudonormals.cpp),
    // or comes nearer than float32 resolves to a face it shares no vertex with (cpu/embedding.cpp);
    // and unused lanes.
    const uint8_t* pseudonormal_unsafe;
    const T* fwn;               // [num_nodes, kChildren, kFwnStride]: the expansion of each child
    int32_t num_nodes;
    int32_t num_slots;
    bool closed;  // build::is_closed (cpu/mesh_topology.cpp), the one definition of a closed mesh
    // The pseudonormal sign equals the winding-number sign off the surface (the conditions and
    // why they suffice: cpu/embedding.cpp), so the winding-sign queries use it: at distances
    // well above rounding, and where the closest triangle is not pseudonormal_unsafe.
    bool pseudonormal_exact;
    // The BVH holds the mesh times `scale`, a power of two that brings its largest
    // coordinate magnitude to [1, 2): exact, and it keeps the fourth powers in the triangle maths away
    // from float underflow/overflow at tiny or huge coordinates. Queries scale in and out.
    T scale, inv_scale;
    // The mesh's area / pi (BVH frame). Farther than its root from the surface, the winding number
    // is below 1/4 in magnitude: a triangle subtends at most its area over its squared distance.
    T outside_dist_sq;
};

template <typename T>
NIS_HD const T* packet_at(const MeshView<T>& m, int32_t packet) {
    return m.packets + static_cast<int64_t>(packet) * kPacketSize;
}

// The three fields from `field` of one lane of a packet.
template <typename T>
NIS_HD Vec3<T> packet_vec3(const T* pk, int field, int lane) {
    return make_vec3(pk[field * kLanes + lane], pk[(field + 1) * kLanes + lane], pk[(field + 2) * kLanes + lane]);
}

template <typename T>
NIS_HD void load_triangle(const MeshView<T>& m, int32_t t, Vec3<T>& a, Vec3<T>& b, Vec3<T>& c) {
    const T* pk = packet_at(m, t / kLanes);
    a = packet_vec3(pk, kPacketA, t % kLanes);
    b = packet_vec3(pk, kPacketB, t % kLanes);
    c = packet_vec3(pk, kPacketC, t % kLanes);
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
        const Vec3<T> a = packet_vec3(pk, kPacketA, k), b = packet_vec3(pk, kPacketB, k), c = packet_vec3(pk, kPacketC, k);
        const Vec3<T> ap = p - a;
        const T v = dot(ap, packet_vec3(pk, kPacketBaryV, k)), w = dot(ap, packet_vec3(pk, kPacketBaryW, k));
        const T h = dot(ap, packet_vec3(pk, kPacketNormal, k));
        const T edges = nis_min(nis_min(segment_distance_sq(ap, b - a, pk[kPacketInvAB * kLanes + k]),
                                        segment_distance_sq(ap, c - a, pk[kPacketInvAC * kLanes + k])),
                                segment_distance_sq(p - b, c - b, pk[kPacketInvBC * kLanes + k]));
        const bool inside = (v >= T(0)) & (w >= T(0)) & (v + w <= pk[kPacketFaceMax * kLanes + k]);
        out[k] = inside ? h * h : edges;
    }
}

// Raise each child's key to the squared distance from p to its oriented box (a lower
// bound of the distance to the triangles inside).
template <typename T>
NIS_HD void child_oriented_box_distance_sq(const T* boxes, Vec3<T> p, T* key) {
    NIS_LANES
    for (int k = 0; k < kChildren; ++k) {
        const T* b = boxes + k;
        const T qx = p.x - b[0], qy = p.y - b[kChildren], qz = p.z - b[2 * kChildren];
        T d2 = T(0);
        for (int axis = 0; axis < 3; ++axis) {
            const T* u = b + (3 + 3 * axis) * kChildren;
            const T along = qx * u[0] + qy * u[kChildren] + qz * u[2 * kChildren];
            const T out = nis_max(std::abs(along) - b[(12 + axis) * kChildren], T(0));
            d2 += out * out;
        }
        key[k] = nis_max(key[k], d2);
    }
}

// Squared distance from p to each child box of the node (0 inside, inf for an empty child).
template <typename T>
NIS_HD void child_box_distance_sq(const BvhNode& n, Vec3<T> p, T* out) {
    NIS_LANES
    for (int k = 0; k < kChildren; ++k) {
        const T dx = nis_max(nis_max(T(n.lo[0][k]) - p.x, p.x - T(n.hi[0][k])), T(0));
        const T dy = nis_max(nis_max(T(n.lo[1][k]) - p.y, p.y - T(n.hi[1][k])), T(0));
        const T dz = nis_max(nis_max(T(n.lo[2][k]) - p.z, p.z - T(n.hi[2][k])), T(0));
        out[k] = dx * dx + dy * dy + dz * dz;
    }
}

template <typename T>
struct ClosestHit {
    T dist_sq;       // squared distance to the closest point
    Vec3<T> point;   // closest point on the mesh
    int32_t tri;     // BVH-order triangle index
    int32_t region;  // TriRegion of the closest point on that triangle
};

// Whether the closest-point traversal also tests each child's oriented box. On the CPU it
// pays (the vector unit computes all eight at once, and near the surface it prunes most
// leaves an axis-aligned box admits); a CUDA thread is bound by its loads, and the 512 bytes
// it reads a node cost more than the nodes it prunes (benchmarks/RESULTS.md).
// Either way the traversal is exact: the axis-aligned distance is a lower bound too.
#if defined(__CUDA_ARCH__)
constexpr bool kTestOrientedBoxes = false;
#else
constexpr bool kTestOrientedBoxes = true;
#endif

// Push the children whose keys (squared box distance, or ray entry t) are below
// `bound`, farthest first so the nearest is popped next. Empty children are
// skipped by reference: an inverted box would read as "everywhere" to the ray test.
template <typename T>
NIS_HD void push_children_near_first(const BvhNode& n, const T* key, T bound, int32_t* stack_ref, T* stack_key,
                                     int& sp) {
    const int base = sp;
    for (int k = 0; k < kChildren; ++k) {
        if (!(key[k] < bound) || n.child[k] == kEmptyChild) continue;
        // Insertion into stack[base, sp), kept in decreasing key order.
        int j = sp++;
        for (; j > base && stack_key[j - 1] < key[k]; --j) {
            stack_key[j] = stack_key[j - 1];
            stack_ref[j] = stack_ref[j - 1];
        }
        stack_key[j] = key[k];
        stack_ref[j] = n.child[k];
    }
}

// Closest point on the mesh to p. `hint` (a BVH-order triangle slot, or -1) seeds the
// search: its distance is an upper bound that prunes the traversal from the start
// (the CPU loop passes the previous query's triangle; queries run in Morton order).
// Leaves are searched by packet distance; the winner's closest point and region
// are computed once at the end.
template <typename T>
NIS_HD ClosestHit<T> closest_point_on_mesh(const MeshView<T>& m, Vec3<T> p, int32_t hint) {
    // Seeding with a real triangle (the hint, else the first) also keeps `tri` valid when
    // every box distance overflows to inf for a far-away point: the result is then that
    // triangle, never an index of -1. The seed's whole packet (its used lanes) is searched
    // first, and its leaf is not opened again when the traversal reaches it: near the surface
    // it is most often one of the ~2 leaves a query opens.
    int32_t best_tri = hint >= 0 ? hint : 0;
    const int32_t seed_packet = best_tri / kLanes;
    T best_d2;
    {
        T d2[kLanes];
        packet_distance_sq(packet_at(m, seed_packet), p, d2);
        best_d2 = d2[best_tri % kLanes];
        for (int k = 0; k < kLanes; ++k) {
            if (d2[k] < best_d2 && m.face_ids[seed_packet * kLanes + k] >= 0) {
                best_d2 = d2[k];
                best_tri = seed_packet * kLanes + k;
            }
        }
    }
    int32_t stack_ref[kBvhStackSize];
    T stack_key[kBvhStackSize];
    int sp = 0;
    stack_ref[sp] = 0;
    stack_key[sp++] = T(0);
    while (sp > 0) {
        --sp;
        if (!(stack_key[sp] < best_d2)) continue;  // a closer triangle was found since the push
        const int32_t ref = stack_ref[sp];
        if (child_is_leaf(ref)) {
            const int32_t packet = leaf_packet(ref), count = leaf_count(ref);
            if (packet == seed_packet) continue;  // searched first
            T d2[kLanes];
            packet_distance_sq(packet_at(m, packet), p, d2);
            for (int k = 0; k < count; ++k) {
                if (d2[k] < best_d2) {
                    best_d2 = d2[k];
                    best_tri = packet * kLanes + k;
                }
            }
            continue;
        }
        const BvhNode& node = m.nodes[ref];
        T key[kChildren];
        child_box_distance_sq(node, p, key);
        if (kTestOrientedBoxes)
            child_oriented_box_distance_sq(m.child_boxes + static_cast<int64_t>(ref) * kBoxSize * kChildren, p, key);
        push_children_near_first(node, key, best_d2, stack_ref, stack_key, sp);
    }
    {
        // Most near-surface points project inside their closest triangle: the closest point is
        // then the projection, from the packet fields the search just read; elsewhere Ericson's
        // regions decide.
        const T* pk = packet_at(m, best_tri / kLanes);
        const int lane = best_tri % kLanes;
        const Vec3<T> a = packet_vec3(pk, kPacketA, lane), ap = p - a;
        const T v = dot(ap, packet_vec3(pk, kPacketBaryV, lane)), w = dot(ap, packet_vec3(pk, kPacketBaryW, lane));
        if ((v >= T(0)) & (w >= T(0)) & (v + w <= pk[kPacketFaceMax * kLanes + lane])) {
            const T h = dot(ap, packet_vec3(pk, kPacketNormal, lane));  // the search's own distance: best_d2 == h * h
            // From the barycentrics, not p - h n: on the triangle to rounding of the mesh's
            // coordinates, however far p is.
            const Vec3<T> q = a + (packet_vec3(pk, kPacketB, lane) - a) * v + (packet_vec3(pk, kPacketC, lane) - a) * w;
            return {h * h, q, best_tri, kRegionFace};
        }
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
    // A face's pseudonormal is its unit normal, which the triangle's packet (just read by the
    // search) holds too: most near-surface points end in a face, and skip the two dependent
    // loads of the table.
    if (hit.region == kRegionFace) {
        const Vec3<T> n = packet_vec3(packet_at(m, hit.tri / kLanes), kPacketNormal, hit.tri % kLanes);
        // A zero normal: the build (in float64) found the triangle too flat to have a face region.
        if (length_sq(n) > T(0)) return dot(p - hit.point, n) < T(0) ? T(-1) : T(1);
    }
    const int32_t row = m.pseudonormal_ids[static_cast<int64_t>(hit.tri) * kPseudonormalSlots + hit.region];
    const Vec3<T> n = load3(m.pseudonormal_table, row);
    return dot(p - hit.point, n) < T(0) ? T(-1) : T(1);
}

}  // namespace nis
