// CPU backend of the mesh queries: OpenMP loops around the per-point functions
// of mesh_query.h (the same ones the CUDA kernels run).
//
// Large batches run in Morton (Z-curve) order of the query points: neighbours
// in the loop walk the same BVH nodes (cache hits), and each closest-point query
// is seeded with the triangle its predecessor found (and, on closed meshes, may
// carry the winding number of its predecessors: winding_sign_inside in
// mesh_query.h). Chunks are scheduled dynamically because the cost per point
// varies a lot (near vs far, holes).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "nis/mesh_ops.h"
#include "nis/mesh_query.h"

namespace nis {
namespace cpu {
namespace {

constexpr int64_t kChunk = 256;
// Closest-point queries go in runs of Morton-consecutive points, each starting with no hint:
// the longer the run the fewer cold starts, while a
// batch still splits into 64 runs or more to balance many threads. The length depends on the
// batch size alone: where runs start decides ties, and the answers must not depend on the
// thread count.
constexpr int64_t kMaxRun = 2048;
int64_t closest_run_length(int64_t n) { return std::clamp(n / 64, kChunk, kMaxRun); }
constexpr int64_t kSortFrom = 4096;  // below this, sorting costs more than it saves
constexpr int64_t kPrefetch = 8;     // how many queries ahead a point is fetched

// The order queries run in: Morton order of the points, or input order for small batches
// (and for batches of 2^32 points or more). order[k] is the index of the k-th query.
struct QueryOrder {
    // Sort words: the Morton code << 32 | the point index; empty when in input order.
    std::vector<uint64_t> words;
    int64_t operator[](int64_t k) const { return words.empty() ? k : static_cast<int64_t>(words[k] & 0xFFFFFFFFu); }
};

template <typename T>
QueryOrder query_order(const T* points, int64_t n) {
    QueryOrder order;
    if (n < kSortFrom || n > int64_t(0xFFFFFFFF)) return order;
    T lo[3] = {points[0], points[1], points[2]}, hi[3] = {points[0], points[1], points[2]};
#pragma omp parallel for schedule(static) reduction(min : lo[:3]) reduction(max : hi[:3])
    for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 3; ++k) {
            lo[k] = std::min(lo[k], points[3 * i + k]);
            hi[k] = std::max(hi[k], points[3 * i + k]);
        }
    T inv_extent[3];
    for (int k = 0; k < 3; ++k) inv_extent[k] = hi[k] > lo[k] ? T(1) / (hi[k] - lo[k]) : T(0);
    // The index rides along with its code in the sort words. LSD radix sort on the
    // 30-bit code, 10 bits a pass: linear, where std::sort is n log n. Each thread codes,
    // counts and scatters its own block of the words (blocks in order: stable), so the sort
    // is not a serial part of the batch.
    std::vector<uint64_t>& keyed = order.words;
    keyed.resize(n);
    std::vector<uint64_t> scratch(n);
    std::vector<int64_t> count;  // [thread][bucket]
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), threads = omp_get_num_threads();
        const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
        for (int64_t i = begin; i < end; ++i)
            keyed[i] = uint64_t(morton_code(points + 3 * i, lo, inv_extent)) << 32 | uint64_t(i);
#pragma omp single
        count.resize(int64_t(threads) * 1024);
        for (int shift = 32; shift < 62; shift += 10) {
            int64_t* mine = count.data() + int64_t(t) * 1024;
            std::fill(mine, mine + 1024, int64_t(0));
            for (int64_t i = begin; i < end; ++i) ++mine[(keyed[i] >> shift) & 1023];
#pragma omp barrier
#pragma omp single
            {  // start of each (bucket, thread) run: buckets in order, threads in order within one
                int64_t sum = 0;
                for (int b = 0; b < 1024; ++b)
                    for (int u = 0; u < threads; ++u) {
                        const int64_t c = count[int64_t(u) * 1024 + b];
                        count[int64_t(u) * 1024 + b] = sum;
                        sum += c;
                    }
            }
            for (int64_t i = begin; i < end; ++i) scratch[mine[(keyed[i] >> shift) & 1023]++] = keyed[i];
#pragma omp barrier
#pragma omp single
            keyed.swap(scratch);
        }
    }
    return order;
}

}  // namespace

template <typename T>
void mesh_closest(const MeshView<T>& m, const T* points, int64_t n, int32_t sign_mode, T beta, T* out_dist,
                  T* out_points, int32_t* out_face) {
    const QueryOrder order = query_order(points, n);
    const int64_t run = closest_run_length(n);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t start = 0; start < n; start += run) {
        QueryCarry<T> carry;
        const int64_t end = std::min(n, start + run);
        for (int64_t k = start; k < end; ++k) {
            // Queries read their points in Morton order, i.e. scattered: fetch a few ahead.
            if (k + kPrefetch < n) __builtin_prefetch(points + 3 * order[k + kPrefetch]);
            query_closest(m, points, order[k], sign_mode, beta, out_dist, out_points, out_face, &carry);
        }
    }
}

template <typename T>
void mesh_winding(const MeshView<T>& m, const T* points, int64_t n, T beta, T* out_winding) {
    const QueryOrder order = query_order(points, n);
#pragma omp parallel for schedule(dynamic, kChunk)
    for (int64_t k = 0; k < n; ++k) query_winding(m, points, order[k], beta, out_winding);
}

template <typename T>
void mesh_intersect(const MeshView<T>& m, const T* origins, const T* directions, int64_t n, T* out_t,
                    int32_t* out_face) {
    const QueryOrder order = query_order(origins, n);
#pragma omp parallel for schedule(dynamic, kChunk)
    for (int64_t k = 0; k < n; ++k) {
        if (k + kPrefetch < n) {  // the rays are read in their origins' Morton order: scattered
            __builtin_prefetch(origins + 3 * order[k + kPrefetch]);
            __builtin_prefetch(directions + 3 * order[k + kPrefetch]);
        }
        query_ray(m, origins, directions, order[k], out_t, out_face);
    }
}

#define NIS_INSTANTIATE(T)                                                                                       \
    template void mesh_closest<T>(const MeshView<T>&, const T*, int64_t, int32_t, T, T*, T*, int32_t*);          \
    template void mesh_winding<T>(const MeshView<T>&, const T*, int64_t, T, T*);                                 \
    template void mesh_intersect<T>(const MeshView<T>&, const T*, const T*, int64_t, T*, int32_t*);
NIS_INSTANTIATE(float)
NIS_INSTANTIATE(double)
#undef NIS_INSTANTIATE

}  // namespace cpu
}  // namespace nis
