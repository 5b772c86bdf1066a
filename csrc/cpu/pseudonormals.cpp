// Angle-weighted pseudonormals (Baerentzen & Aanaes 2005) of every face, vertex and edge,
// and the vertices near which their sign cannot be trusted. Sums run in a fixed order, so
// the table has the same bits at any thread count.
#include <algorithm>
#include <stdexcept>

#include "bvh_build.h"

namespace nis {
namespace build {

namespace {

double angle_between(V3 u, V3 v) { return std::atan2(length(cross(u, v)), dot(u, v)); }

// Per face its unit normal (0 for a degenerate face), per slot that normal times the
// face's angle at the slot's corner.
struct FaceNormals {
    std::vector<V3> face, corner;
};

FaceNormals face_normals(const double* V, const int32_t* F, int64_t nf) {
    FaceNormals out{std::vector<V3>(nf), std::vector<V3>(3 * nf)};
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < nf; ++f) {
        const V3 p[3] = {v3(V + 3 * int64_t(F[3 * f])), v3(V + 3 * int64_t(F[3 * f + 1])),
                         v3(V + 3 * int64_t(F[3 * f + 2]))};
        const V3 n = normalized(cross(p[1] - p[0], p[2] - p[0]));
        out.face[f] = n;
        for (int c = 0; c < 3; ++c)
            out.corner[3 * f + c] = n * angle_between(p[(c + 1) % 3] - p[c], p[(c + 2) % 3] - p[c]);
    }
    return out;
}

// Per vertex the sum of its corners' weighted normals, in slot order (as one thread would sum).
std::vector<V3> vertex_normals(const int32_t* F, int64_t nf, int64_t nv, const FaceNormals& n) {
    std::vector<V3> out(nv, V3{0, 0, 0});
    for (int64_t s = 0; s < 3 * nf; ++s) out[F[s]] = out[F[s]] + n.corner[s];
    return out;
}

// Per edge the sum of its faces' normals, in slot order.
std::vector<V3> edge_normals(const EdgePairing& edges, const FaceNormals& n) {
    const int64_t num_edges = edges.num_edges();
    std::vector<V3> out(num_edges);
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < num_edges; ++e) {
        V3 sum{0, 0, 0};
        for (int64_t k = edges.start[e]; k < edges.start[e + 1]; ++k) sum = sum + n.face[edges.slots[k] / 3];
        out[e] = sum;
    }
    return out;
}

// Per vertex, 1 where the pseudonormal sign near it is not robust to the rounding of the
// closest point (or not right at all): a vertex of a degenerate face; and, on a closed mesh
// (the only one whose pseudonormal sign is used, MeshView::pseudonormal_exact), a pinched
// vertex (its faces form several fans), or a vertex with two faces turned within ~8 degrees
// of opposite (a fold or a thin spike: near it, rounding can pick the face on the far side).
std::vector<uint8_t> unsafe_vertices(const int32_t* F, int64_t nf, int64_t nv, const FaceNormals& n,
                                     const Topology& topo) {
    std::vector<uint8_t> unsafe(nv, 0);
    for (int64_t s = 0; s < 3 * nf; ++s)
        if (!(length_sq(n.face[s / 3]) > 0.5)) unsafe[F[s]] = 1;
    if (!topo.closed) return unsafe;
    // Faces around each vertex (corners bucketed by vertex), compared pairwise; a vertex of
    // more than kMaxPairedValence faces is marked unsafe unchecked (the pairs are quadratic).
    constexpr int64_t kMaxPairedValence = 64;
    std::vector<int64_t> first, corners;
    bucket_sort(3 * nf, nv, [&](int64_t s) { return F[s]; }, first, corners);
#pragma omp parallel for schedule(dynamic, 4096)
    for (int64_t v = 0; v < nv; ++v) {
        if (first[v + 1] - first[v] > kMaxPairedValence) unsafe[v] = 1;
        for (int64_t i = first[v]; i < first[v + 1] && !unsafe[v]; ++i)
            for (int64_t j = i + 1; j < first[v + 1]; ++j)
                if (dot(n.face[corners[i] / 3], n.face[corners[j] / 3]) < -0.99) unsafe[v] = 1;
    }
    std::vector<int64_t> fan(nv, -1);
    for (int64_t s = 0; s < 3 * nf; ++s) {
        const int64_t v = F[s];
        if (fan[v] < 0) fan[v] = topo.corner_fan[s];
        if (fan[v] != topo.corner_fan[s]) unsafe[v] = 1;
    }
    return unsafe;
}

// The features (faces, then vertices, then edges: nf + nv + edges) given rows in the order the
// BVH-order triangles first use them: the features of nearby triangles sit together, as the
// Morton-ordered queries that read them do. Fills out.ids and returns the feature of each row.
std::vector<int64_t> assign_rows(const int32_t* F, int64_t nf, int64_t nv, const std::vector<int32_t>& order,
                                 const EdgePairing& edges, Pseudonormals& out) {
    const int64_t features = nf + nv + edges.num_edges();
    if (features > INT32_MAX)
        throw std::invalid_argument("build_mesh_bvh: too many faces, vertices and edges (max 2^31 in all)");
    std::vector<int32_t> row_of(features, -1);
    std::vector<int64_t> row_feature;
    row_feature.reserve(static_cast<size_t>(std::min<int64_t>(features, 8 * nf)));
    out.ids.resize(static_cast<size_t>(nf) * kPseudonormalSlots);
    for (int64_t i = 0; i < nf; ++i) {
        const int32_t f = order[i];
        const int32_t* idx = F + 3 * int64_t(f);
        int64_t feature[kPseudonormalSlots];
        feature[kRegionFace] = f;
        feature[kRegionVertA] = nf + idx[0];
        feature[kRegionVertB] = nf + idx[1];
        feature[kRegionVertC] = nf + idx[2];
        feature[kRegionEdgeAB] = nf + nv + edges.edge_of[3 * int64_t(f) + 0];
        feature[kRegionEdgeBC] = nf + nv + edges.edge_of[3 * int64_t(f) + 1];
        feature[kRegionEdgeCA] = nf + nv + edges.edge_of[3 * int64_t(f) + 2];
        for (int s = 0; s < kPseudonormalSlots; ++s) {
            int32_t& row = row_of[feature[s]];
            if (row < 0) {
                row = static_cast<int32_t>(row_feature.size());
                row_feature.push_back(feature[s]);
            }
            out.ids[i * kPseudonormalSlots + s] = row;
        }
    }
    return row_feature;
}

}  // namespace

// Shared features are stored once, not 7 normals a triangle.
Pseudonormals compute_pseudonormals(const double* V, int64_t nv, const int32_t* F, int64_t nf,
                                    const std::vector<int32_t>& order, const EdgePairing& edges,
                                    const Topology& topo) {
    const FaceNormals n = face_normals(V, F, nf);
    const std::vector<V3> vert_n = vertex_normals(F, nf, nv, n);
    const std::vector<V3> edge_n = edge_normals(edges, n);
    const std::vector<uint8_t> unsafe_vertex = unsafe_vertices(F, nf, nv, n, topo);
    Pseudonormals out;
    const std::vector<int64_t> row_feature = assign_rows(F, nf, nv, order, edges, out);
    out.unsafe.resize(nf);
    for (int64_t i = 0; i < nf; ++i) {
        const int32_t* idx = F + 3 * int64_t(order[i]);
        out.unsafe[i] = unsafe_vertex[idx[0]] | unsafe_vertex[idx[1]] | unsafe_vertex[idx[2]];
    }
    out.table.resize(row_feature.size() * 3);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < static_cast<int64_t>(row_feature.size()); ++r) {
        const int64_t k = row_feature[r];
        const V3 p = normalized(k < nf ? n.face[k] : k < nf + nv ? vert_n[k - nf] : edge_n[k - nf - nv]);
        out.table[3 * r] = p.x;
        out.table[3 * r + 1] = p.y;
        out.table[3 * r + 2] = p.z;
    }
    return out;
}

}  // namespace build
}  // namespace nis
