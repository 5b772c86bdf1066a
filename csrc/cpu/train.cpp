// CPU backend of the training step (nis/train_ops.h): forward, L1 loss, backward and Adam for a
// batch, in one call. The batch is cut into chunks of kChunk rows, the unit of work of an OpenMP
// thread and of the gradient reduction; a chunk runs through the network in tiles of kTile rows
// whose activations stay in the core's caches from the forward to the backward pass. Every
// product of a tile with a 32-wide layer is a register-blocked micro-kernel over GCC vector types
// (16 lanes where the build has AVX-512, else 8), so the compiler emits the host's widest FMAs.
// The layout comes from nis/mlp.h, the one description of the flat parameter vector.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "nis/mlp.h"
#include "nis/train_ops.h"

// The products here are fused multiply-adds: setup.py's -ffp-contract=off keeps the geometry's
// rounding the same on every ISA, which its certificates need; training only needs float32
// accuracy, and unfused products would cost twice the instructions.
#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

namespace nis {
namespace cpu {

namespace {
constexpr int H = mlp::kHidden;
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
constexpr int kVecs = H / kLanes;  // vectors per 32-wide row
// Rows (forward, input gradient) or weight rows (weight gradient) per register block: 16
// accumulators with AVX-512's 32 registers, 8 with AVX2's 16.
constexpr int kBlock = kLanes == 16 ? 8 : 2;
constexpr int kTile = 64;     // rows of one pass through the network
constexpr int kChunk = 256;   // rows of one partial gradient
constexpr int kStride = (mlp::kParams + 15) / 16 * 16;  // floats between partial gradients (64-byte aligned)
static_assert(H % kLanes == 0 && kTile % kBlock == 0 && kChunk % kTile == 0, "blocks tile the layers");

typedef float VecF __attribute__((vector_size(kLanes * sizeof(float))));

inline VecF load(const float* p) {
    VecF v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store(float* p, VecF v) { std::memcpy(p, &v, sizeof v); }

// 64-byte aligned float storage (the vector loads of a row never straddle a cache line).
struct AlignedFree {
    void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], AlignedFree>;
Buffer aligned_floats(int64_t n) {
    const size_t bytes = static_cast<size_t>((n * 4 + 63) / 64 * 64);
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
    return Buffer(p);
}

enum class Keep { kPositive, kWhereInputPositive };

// For the kBlock rows at a (leading dimension lda) and c (leading dimension H):
//   z[r][:] = bias + sum_k a[r][k] * b[k][:]   (bias may be null)
//   c[r][:] = z where z > 0           (Keep::kPositive: the forward ReLU), or
//   c[r][:] = z where gate[r][:] > 0  (Keep::kWhereInputPositive: the ReLU's backward).
template <int K, Keep kKeep>
inline void row_block(const float* a, int lda, const float* b, const float* bias, const float* gate, float* c) {
    VecF acc[kBlock][kVecs];
    for (int r = 0; r < kBlock; ++r)
        for (int v = 0; v < kVecs; ++v) acc[r][v] = bias ? load(bias + v * kLanes) : VecF{};
    for (int k = 0; k < K; ++k) {
        VecF bk[kVecs];
        for (int v = 0; v < kVecs; ++v) bk[v] = load(b + k * H + v * kLanes);
        for (int r = 0; r < kBlock; ++r) {
            const float ar = a[r * lda + k];
            for (int v = 0; v < kVecs; ++v) acc[r][v] += ar * bk[v];
        }
    }
    for (int r = 0; r < kBlock; ++r)
        for (int v = 0; v < kVecs; ++v) {
            const VecF g = kKeep == Keep::kPositive ? acc[r][v] : load(gate + r * H + v * kLanes);
            store(c + r * H + v * kLanes, g > 0 ? acc[r][v] : VecF{});
        }
}

template <int K, Keep kKeep>
inline void tile_product(const float* a, int lda, const float* b, const float* bias, const float* gate, float* c) {
    for (int r = 0; r < kTile; r += kBlock)
        row_block<K, kKeep>(a + r * lda, lda, b, bias, gate ? gate + r * H : nullptr, c + r * H);
}

// gw[k][:] += sum_r a[r][k] * dz[r][:] over the tile's rows, and gb[:] += sum_r dz[r][:]:
// a layer's weight and bias gradients. KB weight rows are held in registers at a time.
template <int K>
inline void weight_grad(const float* a, int lda, const float* dz, float* gw, float* gb) {
    constexpr int KB = K % kBlock == 0 ? kBlock : K;
    for (int k0 = 0; k0 < K; k0 += KB) {
        VecF acc[KB][kVecs];
        for (int k = 0; k < KB; ++k)
            for (int v = 0; v < kVecs; ++v) acc[k][v] = load(gw + (k0 + k) * H + v * kLanes);
        for (int r = 0; r < kTile; ++r) {
            VecF d[kVecs];
            for (int v = 0; v < kVecs; ++v) d[v] = load(dz + r * H + v * kLanes);
            for (int k = 0; k < KB; ++k) {
                const float ark = a[r * lda + k0 + k];
                for (int v = 0; v < kVecs; ++v) acc[k][v] += ark * d[v];
            }
        }
        for (int k = 0; k < KB; ++k)
            for (int v = 0; v < kVecs; ++v) store(gw + (k0 + k) * H + v * kLanes, acc[k][v]);
    }
    VecF acc[kVecs];
    for (int v = 0; v < kVecs; ++v) acc[v] = load(gb + v * kLanes);
    for (int r = 0; r < kTile; ++r)
        for (int v = 0; v < kVecs; ++v) acc[v] += load(dz + r * H + v * kLanes);
    for (int v = 0; v < kVecs; ++v) store(gb + v * kLanes, acc[v]);
}

// The loss parameters as the tiles read them: an aligned copy of the flat vector, and each
// hidden layer's weights transposed (rows of W^T are what the input gradient multiplies).
struct Weights {
    Buffer flat, transposed;
    explicit Weights(const float* params)
        : flat(aligned_floats(kStride)), transposed(aligned_floats(int64_t(mlp::kReluLayers) * H * H)) {
        std::memcpy(flat.get(), params, sizeof(float) * mlp::kParams);
        for (int l = 1; l < mlp::kReluLayers; ++l)
            for (int i = 0; i < H; ++i)
                for (int j = 0; j < H; ++j) transposed[(l * H + j) * H + i] = w(l)[i * H + j];
    }
    const float* w(int l) const { return flat.get() + mlp::weight_offset(l); }
    const float* b(int l) const { return flat.get() + mlp::bias_offset(l); }
    const float* wt(int l) const { return transposed.get() + l * H * H; }
};

// One thread's activations: the input rows and the output of every ReLU layer for a tile, and
// the two gradients (d loss / d pre-activation) the backward pass alternates between.
struct Tile {
    alignas(64) float x[kTile * mlp::kInput];
    alignas(64) float target[kTile];
    alignas(64) float h[mlp::kReluLayers][kTile * H];
    alignas(64) float dz[2][kTile * H];
    alignas(64) float dout[kTile];
};

// The batch of a step: rows first..first+n of (x, target), or through the index `rows`.
struct Batch {
    const float* x;
    const float* target;
    const int64_t* rows;  // null: in order
    int64_t row(int64_t i) const { return rows ? rows[i] : i; }
};

// Adds the gradient of sum_r |f(x_r) - t_r| * inv_n over the batch's rows first..first+rows-1
// (rows <= kTile) into grad (flat layout); returns the tile's summed |error|.
double tile_step(const Weights& net, const Batch& batch, int64_t first, int rows, float inv_n, Tile& t,
                 float* grad) {
    for (int r = 0; r < rows; ++r) {
        const int64_t src = batch.row(first + r);
        for (int k = 0; k < mlp::kInput; ++k) t.x[r * mlp::kInput + k] = batch.x[src * mlp::kInput + k];
        t.target[r] = batch.target[src];
    }
    std::fill(t.x + mlp::kInput * rows, t.x + mlp::kInput * kTile, 0.0f);  // padding rows: finite, dout = 0

    tile_product<mlp::kInput, Keep::kPositive>(t.x, mlp::kInput, net.w(0), net.b(0), nullptr, t.h[0]);
    for (int l = 1; l < mlp::kReluLayers; ++l)
        tile_product<H, Keep::kPositive>(t.h[l - 1], H, net.w(l), net.b(l), nullptr, t.h[l]);

    // The output unit: tanh, the L1 loss, and d loss / d logit = sign(err) * inv_n * (1 - y^2).
    constexpr int kLast = mlp::kReluLayers - 1;
    const float* w_out = net.w(mlp::kOutputLayer);
    const float b_out = *net.b(mlp::kOutputLayer);
    double loss = 0.0;
    for (int r = 0; r < kTile; ++r) {
        VecF s{};
        for (int v = 0; v < kVecs; ++v) s += load(t.h[kLast] + r * H + v * kLanes) * load(w_out + v * kLanes);
        float z = b_out;
        for (int i = 0; i < kLanes; ++i) z += s[i];
        const float y = std::tanh(z);
        float d = 0.0f;
        if (r < rows) {
            const float err = y - t.target[r];
            loss += std::fabs(err);
            d = (err > 0.0f ? inv_n : err < 0.0f ? -inv_n : 0.0f) * (1.0f - y * y);
        }
        t.dout[r] = d;
        for (int v = 0; v < kVecs; ++v) {
            const VecF g = load(t.h[kLast] + r * H + v * kLanes);
            store(t.dz[0] + r * H + v * kLanes, g > 0 ? d * load(w_out + v * kLanes) : VecF{});
        }
    }
    float* g_out = grad + mlp::weight_offset(mlp::kOutputLayer);
    VecF acc[kVecs];
    for (int v = 0; v < kVecs; ++v) acc[v] = load(g_out + v * kLanes);
    float db = 0.0f;
    for (int r = 0; r < kTile; ++r) {
        for (int v = 0; v < kVecs; ++v) acc[v] += t.dout[r] * load(t.h[kLast] + r * H + v * kLanes);
        db += t.dout[r];
    }
    for (int v = 0; v < kVecs; ++v) store(g_out + v * kLanes, acc[v]);
    grad[mlp::bias_offset(mlp::kOutputLayer)] += db;

    // Hidden layers, last to first: weight gradients, then the gradient at the layer's input.
    int cur = 0;
    for (int l = kLast; l >= 1; --l) {
        weight_grad<H>(t.h[l - 1], H, t.dz[cur], grad + mlp::weight_offset(l), grad + mlp::bias_offset(l));
        tile_product<H, Keep::kWhereInputPositive>(t.dz[cur], H, net.wt(l), nullptr, t.h[l - 1], t.dz[cur ^ 1]);
        cur ^= 1;
    }
    weight_grad<mlp::kInput>(t.x, mlp::kInput, t.dz[cur], grad + mlp::weight_offset(0), grad + mlp::bias_offset(0));
    return loss;
}

// Fills grad (when not null) with the batch's gradient and, when adam is not null, applies
// Adam to params / m / v; returns the summed |error|.
double loss_grad_adam(const float* loss_params, const Batch& batch, int64_t n, float* grad, int threads,
                      float* params, float* m, float* v, const float* update_mask, const AdamStep* adam) {
    if (n <= 0) throw std::invalid_argument("nis_fast: a training batch needs at least one row");
    const Weights net(loss_params);
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    Buffer partial = aligned_floats(chunks * kStride);
    std::vector<double> chunk_loss(chunks);
    const float inv_n = 1.0f / static_cast<float>(n);
    const int team = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel num_threads(team)
    {
        std::unique_ptr<Tile> tile(new Tile);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            float* g = partial.get() + c * kStride;
            std::fill(g, g + kStride, 0.0f);
            double loss = 0.0;
            for (int64_t r = c * kChunk; r < std::min(n, (c + 1) * kChunk); r += kTile) {
                const int rows = static_cast<int>(std::min<int64_t>(kTile, n - r));
                loss += tile_step(net, batch, r, rows, inv_n, *tile, g);
            }
            chunk_loss[c] = loss;
        }
        // The chunks' gradients are summed in chunk order, whichever thread computed them.
#pragma omp for schedule(static)
        for (int64_t i = 0; i < mlp::kParams; ++i) {
            float gi = 0.0f;
            for (int64_t c = 0; c < chunks; ++c) gi += partial[c * kStride + i];
            if (grad) grad[i] = gi;
            if (adam) {
                if (update_mask) gi *= update_mask[i];
                m[i] = adam->beta1 * m[i] + adam->one_minus_beta1 * gi;
                v[i] = adam->beta2 * v[i] + adam->one_minus_beta2 * gi * gi;
                params[i] -= adam->alpha * (m[i] / (std::sqrt(v[i]) + adam->eps));
            }
        }
    }
    double loss = 0.0;
    for (double l : chunk_loss) loss += l;
    return loss;
}
}  // namespace

double mlp_loss_grad(const float* params, const float* x, const float* target, int64_t n, float* grad,
                     int threads) {
    return loss_grad_adam(params, Batch{x, target, nullptr}, n, grad, threads, nullptr, nullptr, nullptr, nullptr,
                          nullptr);
}

double mlp_train_step(const float* loss_params, float* params, float* m, float* v, const float* update_mask,
                      const float* x, const float* target, const int64_t* rows, int64_t n_points, int64_t n,
                      AdamStep adam, int threads) {
    if (rows)
        for (int64_t i = 0; i < n; ++i)
            if (rows[i] < 0 || rows[i] >= n_points)
                throw std::out_of_range("nis_fast: training row index " + std::to_string(rows[i]) + " outside [0, " +
                                        std::to_string(n_points) + ")");
    return loss_grad_adam(loss_params, Batch{x, target, rows}, n, nullptr, threads, params, m, v, update_mask, &adam);
}

}  // namespace cpu
}  // namespace nis
