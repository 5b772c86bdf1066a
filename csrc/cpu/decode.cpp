// CPU backend of the decoding ops: OpenMP loops around the NIS_HD functions of
// mlp.h, trace.h and mcubes.h (no maths here).
#include <algorithm>
#include <numeric>
#include <parallel/algorithm>

#include "nis/decode_ops.h"
#include "nis/mcubes.h"
#include "nis/mlp.h"
#include "nis/trace.h"

// The network evaluation vectorises over the 32 units of a layer; on x86 the
// per-chunk loops are compiled a second time for AVX2 + FMA (picked at load
// time), with every call inside them inlined (flatten) so that the network code
// itself gets the wider instructions.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NIS_CPU_CLONES __attribute__((flatten, target_clones("arch=x86-64-v3", "default")))
#else
#define NIS_CPU_CLONES __attribute__((flatten))
#endif

namespace nis {
namespace cpu {

namespace {
constexpr int64_t kPixelChunk = 64;  // pixels per dynamic OpenMP chunk (ray costs vary a lot)

NIS_CPU_CLONES void render_range(const float* params, const PinholeCamera& cam, const TraceSettings& trace,
                                 const ShadeSettings& shade, const RenderBuffers& out, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
        render_pixel(params, cam, trace, shade, static_cast<int>(i % cam.width), static_cast<int>(i / cam.width), out);
}

NIS_CPU_CLONES void sdf_range(const float* params, const float* points, float* sdf, float* grad, int64_t begin,
                              int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
        const Vec3f p = load3(points, i);
        if (grad) {
            Vec3f g;
            sdf[i] = mlp_sdf_grad(params, p, &g);
            store3(grad, i, g);
        } else {
            sdf[i] = mlp_sdf(params, p);
        }
    }
}
}  // namespace

void render(const float* params, const PinholeCamera& cam, const TraceSettings& trace, const ShadeSettings& shade,
            const RenderBuffers& out) {
    const int64_t n = static_cast<int64_t>(cam.width) * cam.height;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < n; c += kPixelChunk) render_range(params, cam, trace, shade, out, c, std::min(n, c + kPixelChunk));
}

void sdf_points(const float* params, const float* points, int64_t n, float* sdf, float* grad) {
    constexpr int64_t kChunk = 1024;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += kChunk) sdf_range(params, points, sdf, grad, c, std::min(n, c + kChunk));
}

McMesh marching_cubes_cells(const float* values, const int64_t* node_keys, int64_t n_nodes, const int64_t* cells,
                            int64_t n_cells, int64_t ny, int64_t nz, float level) {
    // Value of a grid node: direct in a dense grid, by binary search in a sparse one.
    auto value = [&](int64_t key) -> float {
        if (!node_keys) return values[key];
        return values[std::lower_bound(node_keys, node_keys + n_nodes, key) - node_keys];
    };
    auto cell_ijk = [&](int64_t key, int64_t* i, int64_t* j, int64_t* k) {
        *i = key / (ny * nz);
        *j = (key / nz) % ny;
        *k = key % nz;
    };

    // 1. Case and triangle count per cell, then where each cell's triangles go.
    std::vector<uint8_t> cases(n_cells);
    std::vector<int64_t> first(n_cells + 1, 0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_cells; ++c) {
        int64_t i, j, k;
        cell_ijk(cells[c], &i, &j, &k);
        float v[8];
        for (int q = 0; q < 8; ++q) v[q] = value(mc_corner_key(i, j, k, q, ny, nz));
        cases[c] = static_cast<uint8_t>(mc_case(v, level));
        first[c + 1] = mc_triangle_count(cases[c]);
    }
    std::partial_sum(first.begin(), first.end(), first.begin());
    const int64_t n_faces = first[n_cells];

    // 2. Each triangle corner names the grid edge its vertex lies on.
    std::vector<int64_t> corner_edges(3 * n_faces);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_cells; ++c) {
        if (first[c + 1] == first[c]) continue;
        int64_t i, j, k;
        cell_ijk(cells[c], &i, &j, &k);
        mc_cell_triangles(i, j, k, cases[c], ny, nz, corner_edges.data() + 3 * first[c]);
    }

    // 3. Weld: one vertex per distinct grid edge, faces index into them.
    std::vector<int64_t> edges(corner_edges);
    __gnu_parallel::sort(edges.begin(), edges.end());
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    const int64_t n_vertices = static_cast<int64_t>(edges.size());

    McMesh mesh;
    mesh.faces.resize(3 * n_faces);
    mesh.vertices.resize(3 * n_vertices);
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < 3 * n_faces; ++q)
        mesh.faces[q] = static_cast<int32_t>(std::lower_bound(edges.begin(), edges.end(), corner_edges[q]) - edges.begin());
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < n_vertices; ++e) {
        const int64_t node = edges[e] / 3;
        const int axis = static_cast<int>(edges[e] % 3);
        const Vec3<double> p =
            mc_edge_vertex<double>(edges[e], value(node), value(mc_node_step(node, axis, ny, nz)), level, ny, nz);
        store3(mesh.vertices.data(), e, make_vec3(static_cast<float>(p.x), static_cast<float>(p.y), static_cast<float>(p.z)));
    }
    return mesh;
}

}  // namespace cpu
}  // namespace nis
