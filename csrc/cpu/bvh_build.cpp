// BVH build on the CPU: binned SAH over triangle centroids, depth-first node
// order, leaf triangles reordered to lie contiguously; then the per-triangle
// pseudonormals and the per-node winding-number expansions (see winding.h).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <utility>

#include "nis/mesh_ops.h"

namespace nis {
namespace {

using V3 = Vec3<double>;

struct Box {
    double lo[3] = {INFINITY, INFINITY, INFINITY};
    double hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    void grow(const double* p) {
        for (int k = 0; k < 3; ++k) {
            lo[k] = std::min(lo[k], p[k]);
            hi[k] = std::max(hi[k], p[k]);
        }
    }
    void grow(const Box& b) {
        for (int k = 0; k < 3; ++k) {
            lo[k] = std::min(lo[k], b.lo[k]);
            hi[k] = std::max(hi[k], b.hi[k]);
        }
    }
    double half_area() const {
        if (!(hi[0] >= lo[0])) return 0.0;
        const double x = hi[0] - lo[0], y = hi[1] - lo[1], z = hi[2] - lo[2];
        return x * y + y * z + z * x;
    }
};

// float bounds that still contain the double ones (lo rounded down, hi up).
float round_down(double x) {
    float f = static_cast<float>(x);
    return static_cast<double>(f) > x ? std::nextafter(f, -INFINITY) : f;
}
float round_up(double x) {
    float f = static_cast<float>(x);
    return static_cast<double>(f) < x ? std::nextafter(f, INFINITY) : f;
}

constexpr int kBins = 32;
constexpr int32_t kParallelBuild = 1 << 12;  // triangles in a subtree worth a task of its own

// Leaf packets that hold n triangles.
double packets(int32_t n) { return double((n + kLanes - 1) / kLanes); }

// The binary tree of the SAH build, collapsed into the wide BvhNode tree afterwards.
struct BinaryNode {
    Box box;
    int32_t left, right;   // children, -1 for a leaf
    int32_t first, count;  // triangle range in BVH order
    bool leaf() const { return left < 0; }
};

struct Builder {
    const double* V;
    const int32_t* F;
    int leaf_size;
    std::vector<Box> tri_box;
    std::vector<std::array<double, 3>> centroid;
    std::vector<int32_t> order;  // BVH position -> original face
    std::vector<BinaryNode> nodes;

    const double* vert(int32_t f, int corner) const { return V + 3 * static_cast<int64_t>(F[3 * int64_t(f) + corner]); }

    // Returns the split position in [first+1, first+count-1].
    int32_t split(int32_t first, int32_t count, const Box& cbox, int depth) {
        int32_t* begin = order.data() + first;
        int32_t* end = begin + count;
        int axis = 0;
        for (int k = 1; k < 3; ++k)
            if (cbox.hi[k] - cbox.lo[k] > cbox.hi[axis] - cbox.lo[axis]) axis = k;
        const double extent = cbox.hi[axis] - cbox.lo[axis];
        // Median split when the SAH cannot separate the centroids, or when the
        // remaining depth budget could run out (keeps depth <= kBvhMaxDepth).
        const int needed = static_cast<int>(std::ceil(std::log2(double(count)))) + 1;
        auto median_split = [&] {
            std::nth_element(begin, begin + count / 2, end,
                             [&](int32_t x, int32_t y) { return centroid[x][axis] < centroid[y][axis]; });
            return first + count / 2;
        };
        if (!(extent > 0) || depth + needed >= kBvhMaxDepth) return median_split();
        double best_cost = INFINITY;
        int best_axis = -1, best_bin = -1;
        for (int k = 0; k < 3; ++k) {
            const double ext = cbox.hi[k] - cbox.lo[k];
            if (!(ext > 0)) continue;
            const double scale = kBins / ext;
            Box bins[kBins];
            int32_t counts[kBins] = {};
            for (int32_t* it = begin; it != end; ++it) {
                const int b = std::min(kBins - 1, static_cast<int>((centroid[*it][k] - cbox.lo[k]) * scale));
                counts[b]++;
                bins[b].grow(tri_box[*it]);
            }
            // Sweep: right-side costs first, then left side while scanning. A side costs its area
            // times its packets, not its triangles: a leaf's kLanes triangles are tested at once, so
            // 5 triangles cost as much as 8 (16-22 % fewer packets on the shared meshes than a
            // per-triangle cost, queries 0-3 % faster).
            double right_cost[kBins];
            Box acc;
            int32_t n_acc = 0;
            for (int b = kBins - 1; b > 0; --b) {
                acc.grow(bins[b]);
                n_acc += counts[b];
                right_cost[b] = n_acc ? acc.half_area() * packets(n_acc) : 0.0;
            }
            acc = Box();
            n_acc = 0;
            for (int b = 0; b < kBins - 1; ++b) {
                acc.grow(bins[b]);
                n_acc += counts[b];
                if (n_acc == 0 || n_acc == count) continue;
                const double cost = acc.half_area() * packets(n_acc) + right_cost[b + 1];
                if (cost < best_cost) {
                    best_cost = cost;
                    best_axis = k;
                    best_bin = b;
                }
            }
        }
        // No finite cost (areas overflow at coordinates near 1e154 and beyond): fall back.
        if (best_axis < 0) return median_split();
        const double scale = kBins / (cbox.hi[best_axis] - cbox.lo[best_axis]);
        const double lo = cbox.lo[best_axis];
        int32_t* mid = std::partition(begin, end, [&](int32_t t) {
            return std::min(kBins - 1, static_cast<int>((centroid[t][best_axis] - lo) * scale)) <= best_bin;
        });
        return first + static_cast<int32_t>(mid - begin);
    }

    // Appends the subtree over order[first, first + count) to `out` depth-first (a node, its
    // left subtree, its right subtree) and returns the index of its root there. Halves of
    // kParallelBuild triangles or more are built as OpenMP tasks into vectors of their own and
    // spliced in after: the same nodes in the same order as a serial build, at any thread count
    // (the halves partition disjoint ranges of `order`). Call inside a parallel region; an
    // exception (std::bad_alloc) reaches the caller once the tasks it started have finished.
    int32_t build(std::vector<BinaryNode>& out, int32_t first, int32_t count, int depth) {
        Box box, cbox;
        for (int32_t i = first; i < first + count; ++i) {
            box.grow(tri_box[order[i]]);
            cbox.grow(centroid[order[i]].data());
        }
        const int32_t idx = static_cast<int32_t>(out.size());
        out.push_back({box, -1, -1, first, count});
        if (count <= leaf_size) return idx;
        const int32_t mid = split(first, count, cbox, depth);
        int32_t left, right;
        if (count >= kParallelBuild) {
            // An exception must not leave the task (that ends the process), nor this frame
            // before the task is done with the vectors: both halves catch, and rethrow after.
            std::vector<BinaryNode> left_nodes, right_nodes;
            std::exception_ptr left_error, right_error;
#pragma omp task default(shared)
            try {
                build(left_nodes, first, mid - first, depth + 1);
            } catch (...) {
                left_error = std::current_exception();
            }
            try {
                build(right_nodes, mid, first + count - mid, depth + 1);
            } catch (...) {
                right_error = std::current_exception();
            }
#pragma omp taskwait
            if (left_error) std::rethrow_exception(left_error);
            if (right_error) std::rethrow_exception(right_error);
            left = splice(out, left_nodes);
            right = splice(out, right_nodes);
        } else {
            left = build(out, first, mid - first, depth + 1);
            right = build(out, mid, first + count - mid, depth + 1);
        }
        out[idx].left = left;
        out[idx].right = right;
        return idx;
    }

    // Appends a subtree built on its own (child indices relative to it); returns its root's index.
    static int32_t splice(std::vector<BinaryNode>& out, const std::vector<BinaryNode>& part) {
        const int32_t offset = static_cast<int32_t>(out.size());
        for (BinaryNode n : part) {
            if (!n.leaf()) {
                n.left += offset;
                n.right += offset;
            }
            out.push_back(n);
        }
        return offset;
    }
};

V3 v3(const double* p) { return {p[0], p[1], p[2]}; }
V3 normalized(V3 v) {
    const double l = length(v);
    return l > 0 ? v * (1.0 / l) : V3{0, 0, 0};
}
double angle_between(V3 u, V3 v) { return std::atan2(length(cross(u, v)), dot(u, v)); }

// What the edge pairing tells about the mesh.
struct Topology {
    bool closed = true;  // every edge in exactly two faces, walked in opposite directions; no face repeats an index
    // Per BVH-order triangle: 1 when it touches a vertex where the pseudonormal sign is not
    // robust to the rounding of the closest point (or not right at all): a pinched vertex
    // (its faces form several fans), a vertex of a degenerate face, or a vertex with two faces
    // turned within ~8 degrees of opposite (a fold or a thin spike: near it, rounding can pick
    // the face on the far side).
    std::vector<uint8_t> pseudonormal_unsafe;
    // Per original face: the union-find root of its piece, the faces reachable across shared
    // edges (pieces that touch at a vertex only are separate surfaces, with separate sides).
    std::vector<int64_t> face_piece;
};

// Slot s = 3 * face + corner walks its face's edge from that corner to this next one.
int64_t next_slot(int64_t s) { return s - s % 3 + (s % 3 + 1) % 3; }

// Items 0..n-1 grouped by key(item) in [0, buckets), in item order within a group (a
// counting sort): the items of key b are sorted[start[b], start[b + 1]).
template <typename Key>
void bucket_sort(int64_t n, int64_t buckets, Key key, std::vector<int64_t>& start, std::vector<int64_t>& sorted) {
    start.assign(buckets + 1, 0);
    sorted.resize(n);
    for (int64_t i = 0; i < n; ++i) ++start[key(i) + 1];
    for (int64_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) sorted[fill[key(i)]++] = i;
}

// Angle-weighted pseudonormals (Baerentzen & Aanaes 2005), one per face, vertex
// and edge in `table`, and per BVH-order triangle the row of each of its
// TriRegions in `ids`: shared features are stored once (16 % less memory in all
// than 7 normals a triangle).
// Edges are matched by sorting (face, corner) slots on their undirected edge,
// which also gives the mesh's Topology; the corners that two faces share across
// an edge are joined, so a vertex whose corners end up in one set has one fan.
Topology compute_pseudonormals(const Builder& bd, int64_t nv, int64_t nf, std::vector<double>& table,
                               std::vector<int32_t>& ids) {
    std::vector<V3> face_n(nf), corner_n(3 * nf), vert_n(nv, V3{0, 0, 0}), edge_n;
    std::vector<int64_t> edge_of(3 * nf);  // (face, corner) slot -> its undirected edge
    Topology topo;
    std::vector<uint8_t> unsafe_vertex(nv, 0);
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < nf; ++f) {
        const V3 p[3] = {v3(bd.vert(f, 0)), v3(bd.vert(f, 1)), v3(bd.vert(f, 2))};
        const V3 n = normalized(cross(p[1] - p[0], p[2] - p[0]));
        face_n[f] = n;
        for (int c = 0; c < 3; ++c)
            corner_n[3 * f + c] = n * angle_between(p[(c + 1) % 3] - p[c], p[(c + 2) % 3] - p[c]);
    }
    // Summed in face order, as one thread would: the same bits at any thread count.
    for (int64_t s = 0; s < 3 * nf; ++s) {
        const int32_t v = bd.F[s];
        vert_n[v] = vert_n[v] + corner_n[s];
        if (!(length_sq(face_n[s / 3]) > 0.5)) unsafe_vertex[v] = 1;
        topo.closed = topo.closed && v != bd.F[next_slot(s)];
    }
    // The slots sorted by undirected edge (smaller vertex, larger vertex), then slot: a
    // counting sort on the smaller vertex (stable), then a sort of each vertex's few slots.
    const auto edge_ends = [&](int64_t s) {
        const int32_t i = bd.F[s], j = bd.F[next_slot(s)];
        return std::pair<int32_t, int32_t>(std::min(i, j), std::max(i, j));
    };
    std::vector<int64_t> start, edges;
    bucket_sort(3 * nf, nv, [&](int64_t s) { return edge_ends(s).first; }, start, edges);
#pragma omp parallel for schedule(dynamic, 4096)
    for (int64_t v = 0; v < nv; ++v)
        std::sort(edges.begin() + start[v], edges.begin() + start[v + 1], [&](int64_t a, int64_t b) {
            return std::make_pair(edge_ends(a).second, a) < std::make_pair(edge_ends(b).second, b);
        });
    std::vector<int64_t> corner_set(3 * nf);
    for (int64_t i = 0; i < 3 * nf; ++i) corner_set[i] = i;
    topo.face_piece.resize(nf);
    for (int64_t f = 0; f < nf; ++f) topo.face_piece[f] = f;
    // Each run of one undirected edge in `edges`: its normal (the sum of its faces', in slot order)
    // in parallel, then the union-find joins in edge order.
    std::vector<int64_t> edge_start;
    for (int64_t k = 0; k < 3 * nf; ++k)
        if (k == 0 || edge_ends(edges[k]) != edge_ends(edges[k - 1])) edge_start.push_back(k);
    const int64_t num_edges = static_cast<int64_t>(edge_start.size());
    edge_start.push_back(3 * nf);
    edge_n.resize(num_edges);
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < num_edges; ++e) {
        V3 sum{0, 0, 0};
        for (int64_t k = edge_start[e]; k < edge_start[e + 1]; ++k) {
            sum = sum + face_n[edges[k] / 3];
            edge_of[edges[k]] = e;
        }
        edge_n[e] = sum;
    }
    for (int64_t e = 0; e < num_edges; ++e) {
        if (edge_start[e + 1] - edge_start[e] != 2) {
            topo.closed = false;
            continue;
        }
        // The two faces must walk the edge in opposite directions.
        const int64_t s0 = edges[edge_start[e]], s1 = edges[edge_start[e] + 1];
        topo.closed = topo.closed && bd.F[s0] != bd.F[s1];
        // Join the corners of the two faces at each end of the edge.
        corner_set[union_find_root(corner_set, s0)] = union_find_root(corner_set, next_slot(s1));
        corner_set[union_find_root(corner_set, next_slot(s0))] = union_find_root(corner_set, s1);
        topo.face_piece[union_find_root(topo.face_piece, s0 / 3)] = union_find_root(topo.face_piece, s1 / 3);
    }
    if (topo.closed) {  // the flags only serve closed meshes (MeshView::pseudonormal_exact)
        // Faces around each vertex (corners bucketed by vertex), compared pairwise; a vertex of
        // more than kMaxPairedValence faces is marked unsafe unchecked (the pairs are quadratic).
        constexpr int64_t kMaxPairedValence = 64;
        std::vector<int64_t> first, corners;
        bucket_sort(3 * nf, nv, [&](int64_t s) { return bd.F[s]; }, first, corners);
#pragma omp parallel for schedule(dynamic, 4096)
        for (int64_t v = 0; v < nv; ++v) {
            if (first[v + 1] - first[v] > kMaxPairedValence) unsafe_vertex[v] = 1;
            for (int64_t i = first[v]; i < first[v + 1] && !unsafe_vertex[v]; ++i)
                for (int64_t j = i + 1; j < first[v + 1]; ++j)
                    if (dot(face_n[corners[i] / 3], face_n[corners[j] / 3]) < -0.99) unsafe_vertex[v] = 1;
        }
        std::vector<int64_t> fan(nv, -1);
        for (int64_t s = 0; s < 3 * nf; ++s) {
            const int64_t root = union_find_root(corner_set, s), v = bd.F[s];
            if (fan[v] < 0) fan[v] = root;
            if (fan[v] != root) unsafe_vertex[v] = 1;
        }
    }
    for (int64_t f = 0; f < nf; ++f) topo.face_piece[f] = union_find_root(topo.face_piece, f);
    topo.pseudonormal_unsafe.resize(nf);
    // Rows in the order the BVH-order triangles first use them: the features of nearby
    // triangles sit together, as the Morton-ordered queries that read them do.
    const int64_t features = nf + nv + static_cast<int64_t>(edge_n.size());  // faces, vertices, edges
    if (features > INT32_MAX)
        throw std::invalid_argument("build_mesh_bvh: too many faces, vertices and edges (max 2^31 in all)");
    std::vector<int32_t> row_of(features, -1);
    std::vector<int64_t> row_feature;  // the feature of each row
    row_feature.reserve(static_cast<size_t>(std::min<int64_t>(features, 8 * nf)));
    ids.resize(static_cast<size_t>(nf) * kPseudonormalSlots);
    for (int64_t i = 0; i < nf; ++i) {
        const int32_t f = bd.order[i];
        const int32_t* idx = bd.F + 3 * int64_t(f);
        topo.pseudonormal_unsafe[i] = unsafe_vertex[idx[0]] | unsafe_vertex[idx[1]] | unsafe_vertex[idx[2]];
        int64_t feature[kPseudonormalSlots];
        feature[kRegionFace] = f;
        feature[kRegionVertA] = nf + idx[0];
        feature[kRegionVertB] = nf + idx[1];
        feature[kRegionVertC] = nf + idx[2];
        feature[kRegionEdgeAB] = nf + nv + edge_of[3 * int64_t(f) + 0];
        feature[kRegionEdgeBC] = nf + nv + edge_of[3 * int64_t(f) + 1];
        feature[kRegionEdgeCA] = nf + nv + edge_of[3 * int64_t(f) + 2];
        for (int s = 0; s < kPseudonormalSlots; ++s) {
            int32_t& row = row_of[feature[s]];
            if (row < 0) {
                row = static_cast<int32_t>(row_feature.size());
                row_feature.push_back(feature[s]);
            }
            ids[i * kPseudonormalSlots + s] = row;
        }
    }
    table.resize(row_feature.size() * 3);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < static_cast<int64_t>(row_feature.size()); ++r) {
        const int64_t k = row_feature[r];
        const V3 n = normalized(k < nf ? face_n[k] : k < nf + nv ? vert_n[k - nf] : edge_n[k - nf - nv]);
        table[3 * r] = n.x;
        table[3 * r + 1] = n.y;
        table[3 * r + 2] = n.z;
    }
    return topo;
}

// Far-field expansion of each binary node over its contiguous triangle range.
void compute_fwn(const Builder& bd, const std::vector<double>& tris, std::vector<double>& out) {
    const int64_t nn = static_cast<int64_t>(bd.nodes.size());
    out.assign(static_cast<size_t>(nn) * kFwnStride, 0.0);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < nn; ++i) {
        const int32_t first = bd.nodes[i].first, end = first + bd.nodes[i].count;
        V3 N{0, 0, 0}, weighted{0, 0, 0}, mean{0, 0, 0};
        double area = 0;
        for (int32_t t = first; t < end; ++t) {
            const V3 a = load3(tris.data(), 3 * int64_t(t)), b = load3(tris.data(), 3 * int64_t(t) + 1),
                     c = load3(tris.data(), 3 * int64_t(t) + 2);
            const V3 an = cross(b - a, c - a) * 0.5;
            const double at = length(an);
            const V3 ct = (a + b + c) * (1.0 / 3.0);
            N = N + an;
            area += at;
            weighted = weighted + ct * at;
            mean = mean + ct;
        }
        const V3 p = area > 0 ? weighted * (1.0 / area) : mean * (1.0 / (end - first));
        double r2 = 0, C[9] = {};
        for (int32_t t = first; t < end; ++t) {
            V3 v[3];
            for (int c = 0; c < 3; ++c) {
                v[c] = load3(tris.data(), 3 * int64_t(t) + c);
                r2 = std::max(r2, length_sq(v[c] - p));
            }
            const V3 an = cross(v[1] - v[0], v[2] - v[0]) * 0.5;
            const V3 d = (v[0] + v[1] + v[2]) * (1.0 / 3.0) - p;
            const double dd[3] = {d.x, d.y, d.z}, nn3[3] = {an.x, an.y, an.z};
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c) C[3 * r + c] += dd[r] * nn3[c];
        }
        double* f = out.data() + i * kFwnStride;
        f[0] = N.x, f[1] = N.y, f[2] = N.z;
        f[3] = p.x, f[4] = p.y, f[5] = p.z;
        f[6] = std::sqrt(r2);
        for (int k = 0; k < 9; ++k) f[7 + k] = C[k];
    }
}

// One lane of a triangle packet (see PacketField in bvh.h), computed in float64.
void fill_packet_lane(double* packet, int lane, V3 a, V3 b, V3 c) {
    const V3 ab = b - a, ac = c - a, bc = c - b, n = cross(ab, ac);
    const double n2 = length_sq(n);
    // The same flatness test as closest_point_on_triangle: a sliver has no face region.
    const bool flat = n2 > degenerate_sin2<double>() * length_sq(ab) * length_sq(ac);
    const V3 zero{0, 0, 0};
    const V3 fields[6] = {a, b, c, flat ? n * (1.0 / std::sqrt(n2)) : zero, flat ? cross(ac, n) * (1.0 / n2) : zero,
                          flat ? cross(n, ab) * (1.0 / n2) : zero};
    for (int f = 0; f < 6; ++f) {
        packet[(3 * f + 0) * kLanes + lane] = fields[f].x;
        packet[(3 * f + 1) * kLanes + lane] = fields[f].y;
        packet[(3 * f + 2) * kLanes + lane] = fields[f].z;
    }
    const auto inv = [](V3 e) { return length_sq(e) > 0 ? 1.0 / length_sq(e) : 0.0; };
    packet[kPacketInvAB * kLanes + lane] = inv(ab);
    packet[kPacketInvAC * kLanes + lane] = inv(ac);
    packet[kPacketInvBC * kLanes + lane] = inv(bc);
    packet[kPacketFaceMax * kLanes + lane] = flat ? 1.0 : -1.0;
}

// The oriented box (see kBoxSize in bvh.h) of the triangles [first, first + count) of
// `tris` (BVH order): n along their area-weighted normal, u along the projection of the
// longest edge, half extents from the corners, grown by a relative 1e-6 so that the
// rounding of a float copy cannot make it cut a triangle.
void oriented_box(const std::vector<double>& tris, int64_t first, int64_t count, double* box) {
    V3 normal{0, 0, 0}, longest{0, 0, 0};
    for (int64_t t = first; t < first + count; ++t) {
        const V3 v[3] = {load3(tris.data(), 3 * t), load3(tris.data(), 3 * t + 1), load3(tris.data(), 3 * t + 2)};
        normal = normal + cross(v[1] - v[0], v[2] - v[0]);
        for (int e = 0; e < 3; ++e) {
            const V3 edge = v[(e + 1) % 3] - v[e];
            if (length_sq(edge) > length_sq(longest)) longest = edge;
        }
    }
    V3 n = normalized(normal);
    if (length_sq(n) == 0) n = {0, 0, 1};
    // The box is a lower bound only if its axes are orthonormal. An edge along n leaves a
    // projection that is rounding noise, not a direction: take any perpendicular then, and
    // re-project once more so that u is perpendicular to n to rounding.
    V3 perp = longest - n * dot(longest, n);
    if (!(length_sq(perp) > 1e-6 * length_sq(longest)))
        perp = std::abs(n.x) < 0.9 ? cross(n, V3{1, 0, 0}) : cross(n, V3{0, 1, 0});
    V3 u = normalized(perp);
    u = normalized(u - n * dot(u, n));
    const V3 axes[3] = {u, cross(n, u), n};
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int64_t i = 3 * first; i < 3 * (first + count); ++i)
        for (int k = 0; k < 3; ++k) {
            lo[k] = std::min(lo[k], dot(load3(tris.data(), i), axes[k]));
            hi[k] = std::max(hi[k], dot(load3(tris.data(), i), axes[k]));
        }
    V3 centre{0, 0, 0};
    double diagonal = 0;
    for (int k = 0; k < 3; ++k) {
        centre = centre + axes[k] * (0.5 * (lo[k] + hi[k]));
        diagonal += (hi[k] - lo[k]) * (hi[k] - lo[k]);
    }
    const double grow = 1e-6 * (std::sqrt(diagonal) + length(centre));
    store3(box, 0, centre);
    for (int k = 0; k < 3; ++k) {
        store3(box + 3, k, axes[k]);
        box[12 + k] = 0.5 * (hi[k] - lo[k]) + grow;
    }
    box[15] = 0;
}

// Collapse of the binary tree into the wide one: a wide node takes a binary
// node's two children, then keeps opening inner children until it has kWidth
// of them. Children keep their box and expansion, and get an oriented box.
struct WideBuilder {
    const Builder& bd;
    const std::vector<int32_t>& leaf_packet;
    const std::vector<double>& binary_fwn;
    const std::vector<double>& tris;  // BVH order, compact
    std::vector<BvhNode> nodes;
    std::vector<double> fwn;    // [node, child, kFwnStride]
    std::vector<std::pair<int64_t, int32_t>> box_of;  // (node * kWidth + child, binary node)
    int32_t max_depth = 0;

    int32_t collapse(int32_t b, int32_t depth) {
        max_depth = std::max(max_depth, depth);
        const BinaryNode& root = bd.nodes[b];
        int32_t kids[kWidth], kid_level[kWidth];  // binary node, levels below b
        int n = 0;
        if (root.leaf()) {
            kids[n] = b;  // a tree of one leaf
            kid_level[n++] = 0;
        } else {
            kids[n] = root.left;
            kid_level[n++] = 1;
            kids[n] = root.right;
            kid_level[n++] = 1;
        }
        // Open the shallowest inner child (the largest by area among those): every inner
        // child then lies two binary levels down or more, so the wide tree has at most
        // kBvhMaxDepth / 2 + 1 levels (the bound the traversal stack is sized for).
        while (n < kWidth) {
            int open = -1;
            for (int k = 0; k < n; ++k) {
                if (bd.nodes[kids[k]].leaf()) continue;
                if (open < 0 || kid_level[k] < kid_level[open] ||
                    (kid_level[k] == kid_level[open] &&
                     bd.nodes[kids[k]].box.half_area() > bd.nodes[kids[open]].box.half_area()))
                    open = k;
            }
            if (open < 0) break;
            const BinaryNode& o = bd.nodes[kids[open]];
            kid_level[open] += 1;
            kids[open] = o.left;
            kids[n] = o.right;
            kid_level[n] = kid_level[open];
            ++n;
        }
        const int32_t idx = static_cast<int32_t>(nodes.size());
        nodes.emplace_back();
        fwn.resize(fwn.size() + kWidth * kFwnStride, 0.0);
        for (int k = 0; k < n; ++k) box_of.push_back({int64_t(idx) * kWidth + k, kids[k]});
        for (int k = 0; k < kWidth; ++k) {
            BvhNode& node = nodes[idx];
            node.unused[k] = 0;
            if (k >= n) {
                for (int axis = 0; axis < 3; ++axis) {
                    node.lo[axis][k] = INFINITY;
                    node.hi[axis][k] = -INFINITY;
                }
                node.child[k] = kEmptyChild;
                continue;
            }
            const BinaryNode& c = bd.nodes[kids[k]];
            for (int axis = 0; axis < 3; ++axis) {
                node.lo[axis][k] = round_down(c.box.lo[axis]);
                node.hi[axis][k] = round_up(c.box.hi[axis]);
            }
            std::copy_n(binary_fwn.data() + int64_t(kids[k]) * kFwnStride, kFwnStride,
                        fwn.data() + (int64_t(idx) * kWidth + k) * kFwnStride);
            // Recursion grows `nodes`: the reference above is not used past this point.
            node.child[k] = c.leaf() ? leaf_ref(leaf_packet[kids[k]], c.count) : kEmptyChild;
        }
        for (int k = 0; k < n; ++k) {
            if (bd.nodes[kids[k]].leaf()) continue;
            const int32_t child = collapse(kids[k], depth + 1);
            nodes[idx].child[k] = child;
        }
        return idx;
    }

    // The oriented boxes of all children, [node, kBoxSize, kWidth] (zeros for empty children).
    std::vector<double> child_boxes() const {
        std::vector<double> boxes(nodes.size() * kBoxSize * kWidth, 0.0);
#pragma omp parallel for schedule(dynamic, 64)
        for (int64_t j = 0; j < static_cast<int64_t>(box_of.size()); ++j) {
            const int64_t node = box_of[j].first / kWidth, k = box_of[j].first % kWidth;
            const BinaryNode& c = bd.nodes[box_of[j].second];
            double box[kBoxSize];
            oriented_box(tris, c.first, c.count, box);
            for (int f = 0; f < kBoxSize; ++f) boxes[(node * kBoxSize + f) * kWidth + k] = box[f];
        }
        return boxes;
    }
};

template <typename Dst>
std::vector<Dst> convert(const std::vector<double>& src) {
    std::vector<Dst> out(src.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(src.size()); ++i) out[i] = static_cast<Dst>(src[i]);
    return out;
}

// The float32 arrays, rounded from the float64 ones.
void fill_float32(MeshBvhHost& h) {
    h.f.child_boxes = convert<float>(h.d.child_boxes);
    h.f.packets = convert<float>(h.d.packets);
    h.f.pseudonormal_table = convert<float>(h.d.pseudonormal_table);
    h.f.fwn = convert<float>(h.d.fwn);
    // The float far-field radius is rounded up so the "far enough" test stays conservative.
    for (size_t i = 0; i < h.f.fwn.size(); i += kFwnStride) h.f.fwn[i + 6] = round_up(h.d.fwn[i + 6]);
}

// The tree and its float64 arrays (no float32 copies, no pseudonormal certificate); the
// union-find piece of each face is left in `face_piece`.
MeshBvhHost build_float64(const double* vertices, int64_t nv, const int32_t* faces, int64_t nf, int leaf_size,
                          std::vector<int64_t>& face_piece) {
    if (nf <= 0) throw std::invalid_argument("build_mesh_bvh: the mesh has no faces");
    if (nf >= (int64_t(1) << 30)) throw std::invalid_argument("build_mesh_bvh: too many faces (max 2^30)");
    if (leaf_size < 1 || leaf_size > kLanes)
        throw std::invalid_argument("build_mesh_bvh: leaf_size must be in [1, 4] (a leaf is one triangle packet)");
    // Work on the mesh times a power of two that brings its largest coordinate to [1, 2) (exact).
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < 3 * nv; ++i) {
        lo = std::min(lo, vertices[i]);
        hi = std::max(hi, vertices[i]);
    }
    const double extent = std::max(std::abs(lo), std::abs(hi));
    const double scale = extent > 0 && std::isfinite(extent)
                             ? std::ldexp(1.0, std::clamp(-std::ilogb(extent), -100, 100))
                             : 1.0;
    std::vector<double> scaled(vertices, vertices + 3 * nv);
    for (double& x : scaled) x *= scale;
    Builder bd{scaled.data(), faces, leaf_size};
    bd.tri_box.resize(nf);
    bd.centroid.resize(nf);
    bd.order.resize(nf);
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < nf; ++f) {
        Box b;
        std::array<double, 3> c{0, 0, 0};
        for (int k = 0; k < 3; ++k) {
            const double* p = bd.vert(f, k);
            b.grow(p);
            for (int j = 0; j < 3; ++j) c[j] += p[j] / 3.0;
        }
        bd.tri_box[f] = b;
        bd.centroid[f] = c;
        bd.order[f] = static_cast<int32_t>(f);
    }
    bd.nodes.reserve(2 * nf / std::max(1, leaf_size / 2) + 1);
    std::exception_ptr build_error;  // rethrown outside the parallel region (it must not leave one)
#pragma omp parallel
#pragma omp single
    try {
        bd.build(bd.nodes, 0, static_cast<int32_t>(nf), 0);
    } catch (...) {
        build_error = std::current_exception();
    }
    if (build_error) std::rethrow_exception(build_error);

    MeshBvhHost h;
    h.scale = scale;
    h.num_faces = nf;
    h.leaf_size = leaf_size;
    std::vector<double> tris(static_cast<size_t>(nf) * 9);  // BVH order, compact
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nf; ++i)
        for (int c = 0; c < 3; ++c)
            for (int k = 0; k < 3; ++k) tris[9 * i + 3 * c + k] = bd.vert(bd.order[i], c)[k];
    std::vector<double> fwn;
    std::vector<int32_t> pseudonormal_ids;  // BVH order
    Topology topo = compute_pseudonormals(bd, nv, nf, h.d.pseudonormal_table, pseudonormal_ids);
    h.closed = topo.closed;
    compute_fwn(bd, tris, fwn);
    double area = 0.0;
    for (int64_t i = 0; i < nf; ++i) {  // in order: the same sum at any thread count
        const V3 a = load3(tris.data(), 3 * i), b = load3(tris.data(), 3 * i + 1), c = load3(tris.data(), 3 * i + 2);
        area += 0.5 * length(cross(b - a, c - a));
    }
    h.outside_dist_sq = area / 3.141592653589793;

    // Give every leaf a packet of its own: leaf triangles move to slots from kLanes * (leaf number).
    std::vector<int32_t> leaf_packet(bd.nodes.size(), -1);
    int32_t num_packets = 0;
    for (size_t i = 0; i < bd.nodes.size(); ++i)
        if (bd.nodes[i].leaf()) leaf_packet[i] = num_packets++;
    const int64_t slots = int64_t(num_packets) * kLanes;
    // Leaf references and slots are int32 (see leaf_ref in bvh.h).
    if (slots > INT32_MAX) throw std::invalid_argument("build_mesh_bvh: too many faces (max 2^29 leaves)");
    h.face_ids.assign(slots, -1);
    h.d.packets.assign(static_cast<size_t>(num_packets) * kPacketSize, 0.0);
    h.pseudonormal_ids.assign(static_cast<size_t>(slots) * kPseudonormalSlots, 0);
    h.pseudonormal_unsafe.assign(slots, 1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(bd.nodes.size()); ++i) {
        const BinaryNode& n = bd.nodes[i];
        if (!n.leaf()) continue;
        const int64_t slot = int64_t(leaf_packet[i]) * kLanes;
        double* packet = h.d.packets.data() + int64_t(leaf_packet[i]) * kPacketSize;
        for (int lane = 0; lane < kLanes; ++lane) {
            const int64_t t = n.first + (lane < n.count ? lane : 0);
            const V3 a = load3(tris.data(), 3 * t), b = load3(tris.data(), 3 * t + 1), c = load3(tris.data(), 3 * t + 2);
            if (lane < n.count) {
                fill_packet_lane(packet, lane, a, b, c);
                h.face_ids[slot + lane] = bd.order[t];
                h.pseudonormal_unsafe[slot + lane] = topo.pseudonormal_unsafe[t];
                std::copy_n(pseudonormal_ids.data() + t * kPseudonormalSlots, kPseudonormalSlots,
                            h.pseudonormal_ids.data() + (slot + lane) * kPseudonormalSlots);
            } else {
                fill_packet_lane(packet, lane, a, a, a);  // unused lane
            }
        }
    }
    WideBuilder wide{bd, leaf_packet, fwn, tris};
    wide.collapse(0, 1);
    if (wide.max_depth > kWideMaxDepth) throw std::logic_error("build_mesh_bvh: wide tree deeper than the stack bound");
    h.depth = wide.max_depth;
    h.d.child_boxes = wide.child_boxes();
    h.nodes = std::move(wide.nodes);
    h.d.fwn = std::move(wide.fwn);
    face_piece = std::move(topo.face_piece);
    return h;
}

}  // namespace

MeshBvhHost build_mesh_bvh(const double* vertices, int64_t nv, const int32_t* faces, int64_t nf, int leaf_size,
                           bool keep_float64) {
    std::vector<int64_t> face_piece;
    MeshBvhHost h = build_float64(vertices, nv, faces, nf, leaf_size, face_piece);
    fill_float32(h);
    h.pseudonormal_exact = pseudonormal_sign_is_exact(h, faces, face_piece);  // reads the float64 arrays
    if (!keep_float64) {
        h.source_vertices.assign(vertices, vertices + 3 * nv);
        h.source_faces.assign(faces, faces + 3 * nf);
        h.d = PrecisionArrays<double>();  // frees them
    }
    return h;
}

namespace {
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {  // NaN included
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
template <typename T>
int64_t bytes_of(const std::vector<T>& v) {
    return int64_t(v.size() * sizeof(T));
}
}  // namespace

void add_float64(MeshBvhHost& h) {
    if (h.has_float64()) return;
    std::vector<int64_t> face_piece;
    MeshBvhHost full = build_float64(h.source_vertices.data(), int64_t(h.source_vertices.size() / 3),
                                     h.source_faces.data(), h.num_faces, h.leaf_size, face_piece);
    // The same tree, and float64 arrays that round to the float32 ones kept: else the queries of
    // the two precisions would disagree (the build is deterministic at any thread count).
    fill_float32(full);
    const bool same = same_bits(full.nodes, h.nodes) && same_bits(full.face_ids, h.face_ids) &&
                      same_bits(full.pseudonormal_ids, h.pseudonormal_ids) && same_bits(full.f.packets, h.f.packets) &&
                      same_bits(full.f.child_boxes, h.f.child_boxes) &&
                      same_bits(full.f.pseudonormal_table, h.f.pseudonormal_table) && same_bits(full.f.fwn, h.f.fwn);
    if (!same) throw std::logic_error("add_float64: the rebuilt BVH differs from the first build");
    h.d = std::move(full.d);
    std::vector<double>().swap(h.source_vertices);
    std::vector<int32_t>().swap(h.source_faces);
}

int64_t MeshBvhHost::nbytes() const {
    return bytes_of(nodes) + bytes_of(face_ids) + bytes_of(pseudonormal_unsafe) + bytes_of(pseudonormal_ids) +
           f.nbytes() + d.nbytes() + bytes_of(source_vertices) + bytes_of(source_faces);
}

namespace {
template <typename T>
MeshView<T> view_of(const MeshBvhHost& h, const PrecisionArrays<T>& a) {
    return {h.nodes.data(), a.packets.data(), a.child_boxes.data(), h.face_ids.data(), h.pseudonormal_ids.data(),
            a.pseudonormal_table.data(), h.pseudonormal_unsafe.data(), a.fwn.data(),
            static_cast<int32_t>(h.nodes.size()), static_cast<int32_t>(h.face_ids.size()), h.closed,
            h.pseudonormal_exact, T(h.scale), T(1.0 / h.scale), T(h.outside_dist_sq)};
}
}  // namespace

template <>
MeshView<float> MeshBvhHost::view<float>() const {
    return view_of(*this, f);
}
template <>
MeshView<double> MeshBvhHost::view<double>() const {
    if (!has_float64()) throw std::logic_error("MeshBvhHost: float64 view of a BVH without float64 arrays (add_float64)");
    return view_of(*this, d);
}

}  // namespace nis
