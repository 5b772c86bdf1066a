// CUDA backend of the decoding ops: the same NIS_HD functions as the CPU loops.
// Each block first copies the 7553 weights (30 KB) into shared memory; every
// thread of a warp then reads the same weight at the same time (a broadcast),
// and the activations stay in registers.
#include "nis/decode_ops.h"
#include "nis/launch.h"
#include "nis/mcubes.h"
#include "nis/mlp.h"
#include "nis/trace.h"

namespace nis {
namespace cuda {

namespace {
constexpr int kTileX = 16, kTileY = 8;  // one ray per thread; a 2D tile keeps a warp's rays coherent
constexpr int kEvalBlock = 128;
constexpr size_t kParamBytes = mlp::kParams * sizeof(float);

__device__ void stage_params(const float* __restrict__ params, float* shared) {
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const int nthreads = blockDim.x * blockDim.y;
    for (int q = tid; q < mlp::kParams; q += nthreads) shared[q] = params[q];
    __syncthreads();
}

// Tracing: forward passes only, so few registers and no spills (4 blocks/SM).
__global__ void __launch_bounds__(kTileX* kTileY, 4) trace_kernel(const float* __restrict__ params, PinholeCamera cam,
                                                                  TraceSettings trace, float* t) {
    extern __shared__ float weights[];
    stage_params(params, weights);
    const int px = blockIdx.x * kTileX + threadIdx.x;
    const int py = blockIdx.y * kTileY + threadIdx.y;
    if (px >= cam.width || py >= cam.height) return;
    t[static_cast<int64_t>(py) * cam.width + px] = trace_pixel(weights, cam, trace, px, py);
}

// Shading: the gradient (and AO) at each hit, and the output buffers.
__global__ void __launch_bounds__(kTileX* kTileY, 3) shade_kernel(const float* __restrict__ params, PinholeCamera cam,
                                                                  ShadeSettings shade, const float* __restrict__ t,
                                                                  RenderBuffers out) {
    extern __shared__ float weights[];
    stage_params(params, weights);
    const int px = blockIdx.x * kTileX + threadIdx.x;
    const int py = blockIdx.y * kTileY + threadIdx.y;
    if (px >= cam.width || py >= cam.height) return;
    shade_pixel(weights, cam, shade, px, py, t[static_cast<int64_t>(py) * cam.width + px], out);
}

// Grid-stride loop, so that each block stages the weights once for many points.
// Values only (meshing) and values + gradients are separate kernels: the
// forward-only one needs far fewer registers.
template <bool kWithGrad>
__global__ void __launch_bounds__(kEvalBlock, kWithGrad ? 3 : 4)
    sdf_points_kernel(const float* __restrict__ params, const float* __restrict__ points, int64_t n, float* sdf,
                      float* grad) {
    extern __shared__ float weights[];
    stage_params(params, weights);
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const Vec3f p = load3(points, i);
        if (kWithGrad) {
            Vec3f g;
            sdf[i] = mlp_sdf_grad(weights, p, &g);
            store3(grad, i, g);
        } else {
            sdf[i] = mlp_sdf(weights, p);
        }
    }
}

// Marching cubes passes: one thread per cell / per welded edge.
__global__ void mc_cell_cases_kernel(McGrid grid, const int64_t* __restrict__ cells, int64_t n, uint8_t* cases,
                                     int64_t* triangles) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= n) return;
    int count;
    cases[c] = static_cast<uint8_t>(mc_cell_case(grid, cells[c], &count));
    triangles[c] = count;
}

__global__ void mc_cell_edges_kernel(McGrid grid, const int64_t* __restrict__ cells, const uint8_t* __restrict__ cases,
                                     const int64_t* __restrict__ first, int64_t n, int64_t* edge_keys) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= n) return;
    mc_cell_edge_keys(grid, cells[c], cases[c], edge_keys + 3 * first[c]);
}

__global__ void mc_edge_vertices_kernel(McGrid grid, const int64_t* __restrict__ edges, int64_t n, float* vertices) {
    const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= n) return;
    store3(vertices, e, mc_edge_vertex(grid, edges[e]));
}

constexpr int kMcBlock = 256;

unsigned eval_grid_size(int64_t n) {
    int device = 0, sms = 0;
    check_cuda(cudaGetDevice(&device), "sdf_points");
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "sdf_points");
    const int64_t needed = grid_for(n, kEvalBlock);
    return static_cast<unsigned>(needed < 8LL * sms ? needed : 8LL * sms);
}
}  // namespace

void render(const float* params, const PinholeCamera& cam, const TraceSettings& trace, const ShadeSettings& shade,
            const RenderBuffers& out, void* stream) {
    require_cuda("render");
    if (cam.width <= 0 || cam.height <= 0) return;
    const dim3 block(kTileX, kTileY);
    const dim3 grid(grid_for(cam.width, kTileX), grid_for(cam.height, kTileY));
    const auto s = static_cast<cudaStream_t>(stream);
    float* t = nullptr;
    check_cuda(cudaMallocAsync(&t, sizeof(float) * cam.width * cam.height, s), "render");
    trace_kernel<<<grid, block, kParamBytes, s>>>(params, cam, trace, t);
    shade_kernel<<<grid, block, kParamBytes, s>>>(params, cam, shade, t, out);
    const cudaError_t launch = cudaGetLastError();
    check_cuda(cudaFreeAsync(t, s), "render");
    check_cuda(launch, "render");
}

void sdf_points(const float* params, const float* points, int64_t n, float* sdf, float* grad, void* stream) {
    require_cuda("sdf_points");
    if (n == 0) return;
    const auto kernel = grad ? sdf_points_kernel<true> : sdf_points_kernel<false>;
    kernel<<<eval_grid_size(n), kEvalBlock, kParamBytes, static_cast<cudaStream_t>(stream)>>>(params, points, n, sdf,
                                                                                             grad);
    check_cuda(cudaGetLastError(), "sdf_points");
}

void mc_cell_cases(const McGrid& grid, const int64_t* cells, int64_t n, uint8_t* cases, int64_t* triangles,
                   void* stream) {
    require_cuda("mc_cell_cases");
    if (n == 0) return;
    mc_cell_cases_kernel<<<grid_for(n, kMcBlock), kMcBlock, 0, static_cast<cudaStream_t>(stream)>>>(grid, cells, n,
                                                                                                    cases, triangles);
    check_cuda(cudaGetLastError(), "mc_cell_cases");
}

void mc_cell_edges(const McGrid& grid, const int64_t* cells, const uint8_t* cases, const int64_t* first, int64_t n,
                   int64_t* edge_keys, void* stream) {
    require_cuda("mc_cell_edges");
    if (n == 0) return;
    mc_cell_edges_kernel<<<grid_for(n, kMcBlock), kMcBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        grid, cells, cases, first, n, edge_keys);
    check_cuda(cudaGetLastError(), "mc_cell_edges");
}

void mc_edge_vertices(const McGrid& grid, const int64_t* edges, int64_t n, float* vertices, void* stream) {
    require_cuda("mc_edge_vertices");
    if (n == 0) return;
    mc_edge_vertices_kernel<<<grid_for(n, kMcBlock), kMcBlock, 0, static_cast<cudaStream_t>(stream)>>>(grid, edges, n,
                                                                                                       vertices);
    check_cuda(cudaGetLastError(), "mc_edge_vertices");
}

}  // namespace cuda
}  // namespace nis
