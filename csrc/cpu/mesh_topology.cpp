// The topology of a mesh from its faces alone: which slots walk the same edge, whether the
// mesh is closed, the fans of faces around each vertex, and the connected pieces.
#include <algorithm>
#include <array>
#include <utility>

#include "bvh_build.h"

namespace nis {
namespace build {

EdgePairing pair_edges(const int32_t* F, int64_t nf, int64_t nv) {
    // The slots sorted by undirected edge (smaller vertex, larger vertex), then slot: a
    // counting sort on the smaller vertex (stable), then a sort of each vertex's few slots.
    const auto edge_ends = [&](int64_t s) {
        const int32_t i = F[s], j = F[next_slot(s)];
        return std::pair<int32_t, int32_t>(std::min(i, j), std::max(i, j));
    };
    EdgePairing p;
    std::vector<int64_t> first;
    bucket_sort(3 * nf, nv, [&](int64_t s) { return edge_ends(s).first; }, first, p.slots);
#pragma omp parallel for schedule(dynamic, 4096)
    for (int64_t v = 0; v < nv; ++v)
        std::sort(p.slots.begin() + first[v], p.slots.begin() + first[v + 1], [&](int64_t a, int64_t b) {
            return std::make_pair(edge_ends(a).second, a) < std::make_pair(edge_ends(b).second, b);
        });
    for (int64_t k = 0; k < 3 * nf; ++k)
        if (k == 0 || edge_ends(p.slots[k]) != edge_ends(p.slots[k - 1])) p.start.push_back(k);
    p.start.push_back(3 * nf);
    p.edge_of.resize(3 * nf);
    const int64_t num_edges = p.num_edges();
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < num_edges; ++e)
        for (int64_t k = p.start[e]; k < p.start[e + 1]; ++k) p.edge_of[p.slots[k]] = e;
    return p;
}

bool is_closed(const int32_t* F, int64_t nf, const EdgePairing& edges) {
    for (int64_t s = 0; s < 3 * nf; ++s)
        if (F[s] == F[next_slot(s)]) return false;  // a face repeats an index
    for (int64_t e = 0; e < edges.num_edges(); ++e) {
        if (edges.start[e + 1] - edges.start[e] != 2) return false;
        // The two faces must walk the edge in opposite directions: from different ends.
        if (F[edges.slots[edges.start[e]]] == F[edges.slots[edges.start[e] + 1]]) return false;
    }
    return true;
}

Topology mesh_topology(const int32_t* F, int64_t nf, const EdgePairing& edges) {
    Topology topo;
    topo.closed = is_closed(F, nf, edges);
    topo.corner_fan.resize(3 * nf);
    for (int64_t s = 0; s < 3 * nf; ++s) topo.corner_fan[s] = s;
    topo.face_piece.resize(nf);
    for (int64_t f = 0; f < nf; ++f) topo.face_piece[f] = f;
    // Across each edge of exactly two faces, in edge order: join the corners of the two faces
    // at each end of the edge, and the two faces' pieces.
    for (int64_t e = 0; e < edges.num_edges(); ++e) {
        if (edges.start[e + 1] - edges.start[e] != 2) continue;
        const int64_t s0 = edges.slots[edges.start[e]], s1 = edges.slots[edges.start[e] + 1];
        std::vector<int64_t>& fan = topo.corner_fan;
        fan[union_find_root(fan, s0)] = union_find_root(fan, next_slot(s1));
        fan[union_find_root(fan, next_slot(s0))] = union_find_root(fan, s1);
        topo.face_piece[union_find_root(topo.face_piece, s0 / 3)] = union_find_root(topo.face_piece, s1 / 3);
    }
    for (int64_t s = 0; s < 3 * nf; ++s) topo.corner_fan[s] = union_find_root(topo.corner_fan, s);
    for (int64_t f = 0; f < nf; ++f) topo.face_piece[f] = union_find_root(topo.face_piece, f);
    return topo;
}

}  // namespace build

MeshDefects mesh_defects(const int32_t* F, int64_t nf, int64_t nv) {
    const build::EdgePairing edges = build::pair_edges(F, nf, nv);
    MeshDefects d{build::is_closed(F, nf, edges), 0, 0, 0, 0};
    const auto collapsed = [&](int64_t f) {
        return F[3 * f] == F[3 * f + 1] || F[3 * f + 1] == F[3 * f + 2] || F[3 * f + 2] == F[3 * f];
    };
    for (int64_t e = 0; e < edges.num_edges(); ++e) {
        int64_t forward = 0, backward = 0;  // slots walking the edge from its smaller / larger vertex
        for (int64_t k = edges.start[e]; k < edges.start[e + 1]; ++k) {
            const int64_t s = edges.slots[k];
            if (collapsed(s / 3)) continue;
            ++(F[s] < F[build::next_slot(s)] ? forward : backward);
        }
        d.boundary_edges += forward + backward == 1;
        d.non_manifold_edges += forward + backward > 2;
        d.inconsistent_edges += (forward > 1) + (backward > 1);
    }
    // Duplicate faces: the faces grouped by their smallest vertex, then each group sorted by its
    // faces' sorted index triples; equal neighbours are duplicates.
    const auto sorted_face = [&](int64_t f) {
        std::array<int32_t, 3> t{F[3 * f], F[3 * f + 1], F[3 * f + 2]};
        std::sort(t.begin(), t.end());
        return t;
    };
    std::vector<int64_t> first, faces;
    build::bucket_sort(nf, nv, [&](int64_t f) { return sorted_face(f)[0]; }, first, faces);
    int64_t duplicates = 0;
#pragma omp parallel for schedule(dynamic, 4096) reduction(+ : duplicates)
    for (int64_t v = 0; v < nv; ++v) {
        std::sort(faces.begin() + first[v], faces.begin() + first[v + 1],
                  [&](int64_t a, int64_t b) { return sorted_face(a) < sorted_face(b); });
        for (int64_t k = first[v] + 1; k < first[v + 1]; ++k)
            duplicates += sorted_face(faces[k]) == sorted_face(faces[k - 1]);
    }
    d.duplicate_faces = duplicates;
    return d;
}

}  // namespace nis
