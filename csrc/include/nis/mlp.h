// The network of Davies et al. (2020) evaluated for ONE point, written once for
// the CPU and CUDA backends: 3 -> 32, seven 32 -> 32 (ReLU), 32 -> 1 (tanh).
//
// Parameters are the flat 7553-value vector of nis_fast/core/layout.py (Keras order:
// per layer W [fan_in, fan_out] row-major, then b; mlp::weight_offset below). Activations live in local
// arrays that the loops below unroll into registers; the backward pass keeps only
// one 32-bit ReLU mask per layer, so the analytic input gradient costs about one
// more forward pass and no memory traffic.
#pragma once
#include "nis/common.h"

// On the GPU, loops within a layer are unrolled (activations stay in registers,
// weight offsets become immediates); the loop over layers is not: unrolling it too
// multiplies code size by 8 for no measurable gain and makes nvcc crawl. On the
// CPU the compiler's loop vectoriser handles the 32-wide loops (one unit per SIMD
// lane); csrc/cpu/decode.cpp inlines everything into its AVX2 and default clones.
#if defined(__CUDA_ARCH__)  // the device pass of nvcc (its host pass would pass the pragmas on to gcc)
#define NIS_UNROLL _Pragma("unroll")
#define NIS_NO_UNROLL _Pragma("unroll 1")
#else
#define NIS_UNROLL
#define NIS_NO_UNROLL
#endif

namespace nis {
namespace mlp {
constexpr int kInput = 3;
constexpr int kHidden = 32;                // units of each hidden layer
constexpr int kReluLayers = 8;             // layers 0..7: 3->32 then seven 32->32
constexpr int kOutputLayer = kReluLayers;  // layer 8: 32->1, then tanh
constexpr int kLayers = kOutputLayer + 1;

// Where layer l (0..kLayers-1) lies in the flat vector: its weights W [fan_in, fan_out]
// row-major from weight_offset(l), then its biases from bias_offset(l). The evaluation below
// reads the parameters through these alone; the mlp_layout binding reports them, and a test
// compares them with nis_fast/core/layout.py.
NIS_HD constexpr int fan_in(int l) { return l == 0 ? kInput : kHidden; }
NIS_HD constexpr int fan_out(int l) { return l == kOutputLayer ? 1 : kHidden; }
NIS_HD constexpr int weight_offset(int l) {
    return l == 0 ? 0 : (kInput * kHidden + kHidden) + (l - 1) * (kHidden * kHidden + kHidden);
}
NIS_HD constexpr int bias_offset(int l) { return weight_offset(l) + fan_in(l) * fan_out(l); }
constexpr int kParams = bias_offset(kOutputLayer) + fan_out(kOutputLayer);
static_assert(kParams == 7553, "the flat layout of nis_fast/core/layout.py has 7553 values");
static_assert(weight_offset(kOutputLayer) == bias_offset(kOutputLayer - 1) + fan_out(kOutputLayer - 1),
              "layers follow each other with no gap");
}  // namespace mlp

// out = relu(in @ W + b) for one Dense layer with weights w and biases b; returns the ReLU mask
// (bit j set when unit j is active). `in` and `out` may alias: the sums are
// accumulated in a separate array first.
template <int FanIn, typename T>
NIS_HD uint32_t mlp_dense_relu(const T* w, const T* b, const T* in, T* out) {
    T acc[mlp::kHidden];
    NIS_UNROLL
    for (int j = 0; j < mlp::kHidden; ++j) acc[j] = b[j];
    NIS_UNROLL
    for (int i = 0; i < FanIn; ++i) {
        const T xi = in[i];
        NIS_UNROLL
        for (int j = 0; j < mlp::kHidden; ++j) acc[j] += xi * w[i * mlp::kHidden + j];
    }
    uint32_t mask = 0;
    NIS_UNROLL
    for (int j = 0; j < mlp::kHidden; ++j) {
        const bool on = acc[j] > T(0);
        out[j] = on ? acc[j] : T(0);
        mask |= static_cast<uint32_t>(on) << j;
    }
    return mask;
}

// The eight ReLU layers; masks[l] receives layer l's mask (pass nullptr to skip).
template <typename T>
NIS_HD void mlp_hidden(const T* params, Vec3<T> x, T h[mlp::kHidden], uint32_t* masks) {
    const T in[mlp::kInput] = {x.x, x.y, x.z};
    uint32_t m = mlp_dense_relu<mlp::kInput>(params + mlp::weight_offset(0), params + mlp::bias_offset(0), in, h);
    if (masks) masks[0] = m;
    NIS_NO_UNROLL
    for (int l = 1; l < mlp::kReluLayers; ++l) {
        m = mlp_dense_relu<mlp::kHidden>(params + mlp::weight_offset(l), params + mlp::bias_offset(l), h, h);
        if (masks) masks[l] = m;
    }
}

// Pre-activation of the output unit.
template <typename T>
NIS_HD T mlp_output_logit(const T* params, const T h[mlp::kHidden]) {
    const T* w = params + mlp::weight_offset(mlp::kOutputLayer);
    T s = params[mlp::bias_offset(mlp::kOutputLayer)];
    NIS_UNROLL
    for (int j = 0; j < mlp::kHidden; ++j) s += h[j] * w[j];
    return s;
}

// The weights are loop-invariant for a caller that evaluates the network many
// times (the steps of a ray, a grid-stride loop): nvcc would hoist thousands of
// weight loads out of that loop into registers and spill. An opaque zero offset
// keeps each evaluation's loads inside it, and keeps shared-memory addressing (LDS.128).
template <typename T>
NIS_HD const T* mlp_no_hoist(const T* params) {
#if defined(__CUDA_ARCH__)
    int zero;
    asm volatile("mov.u32 %0, 0;" : "=r"(zero));
    return params + zero;
#else
    return params;
#endif
}

// The network's signed distance at x: tanh of the output unit.
template <typename T>
NIS_HD T mlp_sdf(const T* params, Vec3<T> x) {
    params = mlp_no_hoist(params);
    T h[mlp::kHidden];
    mlp_hidden(params, x, h, static_cast<uint32_t*>(nullptr));
    return std::tanh(mlp_output_logit(params, h));
}

// sum_j w[j] * g[j] over one 32-wide row, as 8 interleaved partial sums: the CPU
// vectoriser may not reorder a float reduction, but it can vectorise these.
template <typename T>
NIS_HD T mlp_dot_row(const T* w, const T* g) {
    T part[8];
    NIS_UNROLL
    for (int l = 0; l < 8; ++l) part[l] = w[l] * g[l];
    NIS_UNROLL
    for (int j = 8; j < mlp::kHidden; j += 8) {
        NIS_UNROLL
        for (int l = 0; l < 8; ++l) part[l] += w[j + l] * g[j + l];
    }
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// The signed distance and its analytic gradient w.r.t. x (backprop through the
// tanh and the eight ReLU layers, using the saved masks).
template <typename T>
NIS_HD T mlp_sdf_grad(const T* params, Vec3<T> x, Vec3<T>* grad) {
    params = mlp_no_hoist(params);
    T g[mlp::kHidden];
    uint32_t masks[mlp::kReluLayers];
    mlp_hidden(params, x, g, masks);
    const T f = std::tanh(mlp_output_logit(params, g));
    const T dlogit = T(1) - f * f;
    const T* w_out = params + mlp::weight_offset(mlp::kOutputLayer);
    NIS_UNROLL
    for (int j = 0; j < mlp::kHidden; ++j) g[j] = dlogit * w_out[j];  // d f / d h_7
    NIS_NO_UNROLL
    for (int l = mlp::kReluLayers - 1; l >= 1; --l) {
        const T* w = params + mlp::weight_offset(l);
        T gin[mlp::kHidden];
        NIS_UNROLL
        for (int j = 0; j < mlp::kHidden; ++j) g[j] = ((masks[l] >> j) & 1u) ? g[j] : T(0);
        NIS_UNROLL
        for (int i = 0; i < mlp::kHidden; ++i) gin[i] = mlp_dot_row(w + i * mlp::kHidden, g);
        NIS_UNROLL
        for (int i = 0; i < mlp::kHidden; ++i) g[i] = gin[i];
    }
    T d[mlp::kInput] = {T(0), T(0), T(0)};
    NIS_UNROLL
    for (int j = 0; j < mlp::kHidden; ++j) {
        const T gj = ((masks[0] >> j) & 1u) ? g[j] : T(0);
        NIS_UNROLL
        for (int k = 0; k < mlp::kInput; ++k) d[k] += params[mlp::weight_offset(0) + k * mlp::kHidden + j] * gj;
    }
    *grad = make_vec3(d[0], d[1], d[2]);
    return f;
}

}  // namespace nis
