// What the files of the CPU BVH build share (internal to csrc/cpu/):
//   bvh_build.cpp      binned SAH build, collapse to the wide tree, packets, float32 copies
//   mesh_topology.cpp  edge pairing, the closed-mesh test, corner fans and connected pieces
//   pseudonormals.cpp  angle-weighted pseudonormals, and the vertices where their sign is unsafe
//   node_data.cpp      per-child winding-number expansions and oriented boxes
// Everything here works in float64 on the mesh as bvh_build.cpp scaled it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nis/mesh_ops.h"

namespace nis {
namespace build {

using V3 = Vec3<double>;

inline V3 v3(const double* p) { return {p[0], p[1], p[2]}; }
inline V3 normalized(V3 v) {
    const double l = length(v);
    return l > 0 ? v * (1.0 / l) : V3{0, 0, 0};
}

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

// The binary tree of the SAH build, collapsed into the wide BvhNode tree afterwards.
struct BinaryNode {
    Box box;
    int32_t left, right;   // children, -1 for a leaf
    int32_t first, count;  // triangle range in BVH order
    bool leaf() const { return left < 0; }
};

// Slot s = 3 * face + corner walks its face's edge from that corner to the next one.
inline int64_t next_slot(int64_t s) { return s - s % 3 + (s % 3 + 1) % 3; }

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

// The slots of a mesh grouped by the undirected edge they walk.
struct EdgePairing {
    std::vector<int64_t> slots;    // sorted by (smaller vertex, larger vertex, slot)
    std::vector<int64_t> start;    // edge e walked by slots[start[e], start[e + 1]); num_edges() + 1 entries
    std::vector<int64_t> edge_of;  // slot -> its edge
    int64_t num_edges() const { return static_cast<int64_t>(start.size()) - 1; }
};
// faces [nf, 3], indices in [0, nv).
EdgePairing pair_edges(const int32_t* faces, int64_t nf, int64_t nv);

// The one definition of a closed mesh (MeshBvhHost::closed, MeshView::closed, mesh_closed):
// no face repeats an index, and every edge is walked by exactly two faces, in opposite directions.
bool is_closed(const int32_t* faces, int64_t nf, const EdgePairing& edges);

// What the edge pairing tells about the mesh.
struct Topology {
    bool closed = false;  // is_closed
    // Per slot: the union-find root of its corner once the corners that two faces share across
    // an edge are joined: the corners of a vertex with one root form one fan of faces.
    std::vector<int64_t> corner_fan;
    // Per face: the union-find root of its piece, the faces reachable across shared edges
    // (pieces that touch at a vertex only are separate surfaces, with separate sides).
    std::vector<int64_t> face_piece;
};
Topology mesh_topology(const int32_t* faces, int64_t nf, const EdgePairing& edges);

// Angle-weighted pseudonormals (Baerentzen & Aanaes 2005) of the faces, vertices and edges,
// each stored once in `table`; per BVH-order triangle (order[i] is its face) the row of each
// of its TriRegions in `ids`, and whether its pseudonormal sign is unsafe (see unsafe_vertices
// in pseudonormals.cpp).
struct Pseudonormals {
    std::vector<double> table;    // [rows, 3]
    std::vector<int32_t> ids;     // [nf, kPseudonormalSlots]
    std::vector<uint8_t> unsafe;  // [nf]
};
Pseudonormals compute_pseudonormals(const double* vertices, int64_t nv, const int32_t* faces, int64_t nf,
                                    const std::vector<int32_t>& order, const EdgePairing& edges,
                                    const Topology& topo);

// The far-field winding-number expansion (see winding.h) of each binary node over its triangle
// range of `tris` (BVH order, 9 values a triangle): [node, kFwnStride].
void compute_fwn(const std::vector<BinaryNode>& nodes, const std::vector<double>& tris, std::vector<double>& out);

// The oriented box (kBoxSize values, see bvh.h) of the triangles [first, first + count) of `tris`.
void oriented_box(const std::vector<double>& tris, int64_t first, int64_t count, double* box);

}  // namespace build
}  // namespace nis
