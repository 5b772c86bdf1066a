// Declarations of the decoding ops (sphere tracing, batched network evaluation,
// marching cubes in three passes), one entry per backend. Raw pointers and sizes only.
#pragma once
#include <cstdint>

#include "nis/mcubes.h"
#include "nis/trace.h"

namespace nis {

namespace cpu {
void render(const float* params, const PinholeCamera& cam, const TraceSettings& trace, const ShadeSettings& shade,
            const RenderBuffers& out);
// sdf[i] = f(points[i]); grad (may be null) = df/dx [n, 3].
void sdf_points(const float* params, const float* points, int64_t n, float* sdf, float* grad);
// Marching cubes, pass 1: case index and triangle count of each cell.
void mc_cell_cases(const McGrid& grid, const int64_t* cells, int64_t n, uint8_t* cases, int64_t* triangles);
// Pass 2: the edge keys of each cell's triangles, written from 3 * first[c].
void mc_cell_edges(const McGrid& grid, const int64_t* cells, const uint8_t* cases, const int64_t* first, int64_t n,
                   int64_t* edge_keys);
// Pass 3 (after welding the edge keys): the vertex on each distinct edge, [n, 3] grid units.
void mc_edge_vertices(const McGrid& grid, const int64_t* edges, int64_t n, float* vertices);
}  // namespace cpu

namespace cuda {
void render(const float* params, const PinholeCamera& cam, const TraceSettings& trace, const ShadeSettings& shade,
            const RenderBuffers& out, void* stream);
void sdf_points(const float* params, const float* points, int64_t n, float* sdf, float* grad, void* stream);
void mc_cell_cases(const McGrid& grid, const int64_t* cells, int64_t n, uint8_t* cases, int64_t* triangles,
                   void* stream);
void mc_cell_edges(const McGrid& grid, const int64_t* cells, const uint8_t* cases, const int64_t* first, int64_t n,
                   int64_t* edge_keys, void* stream);
void mc_edge_vertices(const McGrid& grid, const int64_t* edges, int64_t n, float* vertices, void* stream);
}  // namespace cuda

}  // namespace nis
