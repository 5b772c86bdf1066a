// Declarations of the decoding ops (sphere tracing, batched network evaluation,
// marching cubes), one entry per backend. Raw pointers and sizes only.
#pragma once
#include <cstdint>
#include <vector>

#include "nis/trace.h"

namespace nis {

// An indexed triangle mesh in grid units: vertices [V, 3], faces [F, 3].
struct McMesh {
    std::vector<float> vertices;
    std::vector<int32_t> faces;
};

namespace cpu {
void render(const float* params, const PinholeCamera& cam, const TraceSettings& trace, const ShadeSettings& shade,
            const RenderBuffers& out);
// sdf[i] = f(points[i]); grad (may be null) = df/dx [n, 3].
void sdf_points(const float* params, const float* points, int64_t n, float* sdf, float* grad);
// Marching cubes over the given cells of an (nx, ny, nz) grid of nodes (nx is implied). Cells are
// named by the key of their low corner; `values` holds the value of every node in
// `node_keys` (sorted, unique), or of the whole grid in C order when node_keys is null.
McMesh marching_cubes_cells(const float* values, const int64_t* node_keys, int64_t n_nodes, const int64_t* cells,
                            int64_t n_cells, int64_t ny, int64_t nz, float level);
}  // namespace cpu

namespace cuda {
void render(const float* params, const PinholeCamera& cam, const TraceSettings& trace, const ShadeSettings& shade,
            const RenderBuffers& out, void* stream);
void sdf_points(const float* params, const float* points, int64_t n, float* sdf, float* grad, void* stream);
}  // namespace cuda

}  // namespace nis
