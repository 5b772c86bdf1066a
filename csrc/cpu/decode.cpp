// CPU backend of the decoding ops: OpenMP loops around the NIS_HD functions of
// mlp.h, trace.h and mcubes.h (no maths here).
#include <algorithm>

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
    for (int64_t i = begin; i < end; ++i) {
        const int px = static_cast<int>(i % cam.width), py = static_cast<int>(i / cam.width);
        shade_pixel(params, cam, shade, px, py, trace_pixel(params, cam, trace, px, py), out);
    }
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

void mc_cell_cases(const McGrid& grid, const int64_t* cells, int64_t n, uint8_t* cases, int64_t* triangles) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; ++c) {
        int count;
        cases[c] = static_cast<uint8_t>(mc_cell_case(grid, cells[c], &count));
        triangles[c] = count;
    }
}

void mc_cell_edges(const McGrid& grid, const int64_t* cells, const uint8_t* cases, const int64_t* first, int64_t n,
                   int64_t* edge_keys) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; ++c) mc_cell_edge_keys(grid, cells[c], cases[c], edge_keys + 3 * first[c]);
}

void mc_edge_vertices(const McGrid& grid, const int64_t* edges, int64_t n, float* vertices) {
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < n; ++e) store3(vertices, e, mc_edge_vertex(grid, edges[e]));
}

}  // namespace cpu
}  // namespace nis
