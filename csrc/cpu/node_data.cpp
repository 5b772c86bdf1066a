// The data each child of a wide node carries besides its axis-aligned box, from its
// triangles (BVH order, float64): the winding-number expansion and the oriented box.
#include "bvh_build.h"

namespace nis {
namespace build {

void compute_fwn(const std::vector<BinaryNode>& nodes, const std::vector<double>& tris, std::vector<double>& out) {
    const int64_t nn = static_cast<int64_t>(nodes.size());
    out.assign(static_cast<size_t>(nn) * kFwnStride, 0.0);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < nn; ++i) {
        const int32_t first = nodes[i].first, end = first + nodes[i].count;
        V3 N{0, 0, 0}, weighted{0, 0, 0}, mean{0, 0, 0};
        double area = 0;
        for (int32_t t = first; t < end; ++t) {
            const V3 a = load3(tris.data(), 3 * int64_t(t)), b = load3(tris.data(), 3 * int64_t(t) + 1),
                     c = load3(tris.data(), 3 * int64_t(t) + 2);
            const V3 an = cross(b - a, c - a) * 0.5;
            const double at = length(an);
            const V3 ct = (a + b + c) * (1.0 / 3.0);
            N = N + an;
            area += at;
            weighted = weighted + ct * at;
            mean = mean + ct;
        }
        const V3 p = area > 0 ? weighted * (1.0 / area) : mean * (1.0 / (end - first));
        double r2 = 0, C[9] = {};
        for (int32_t t = first; t < end; ++t) {
            V3 v[3];
            for (int c = 0; c < 3; ++c) {
                v[c] = load3(tris.data(), 3 * int64_t(t) + c);
                r2 = std::max(r2, length_sq(v[c] - p));
            }
            const V3 an = cross(v[1] - v[0], v[2] - v[0]) * 0.5;
            const V3 d = (v[0] + v[1] + v[2]) * (1.0 / 3.0) - p;
            const double dd[3] = {d.x, d.y, d.z}, nn3[3] = {an.x, an.y, an.z};
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c) C[3 * r + c] += dd[r] * nn3[c];
        }
        double* f = out.data() + i * kFwnStride;
        f[0] = N.x, f[1] = N.y, f[2] = N.z;
        f[3] = p.x, f[4] = p.y, f[5] = p.z;
        f[6] = std::sqrt(r2);
        for (int k = 0; k < 9; ++k) f[7 + k] = C[k];
    }
}

// n along the triangles' area-weighted normal, u along the projection of the longest edge,
// half extents from the corners, grown by a relative 1e-6 so that the rounding of a float
// copy cannot make it cut a triangle.
void oriented_box(const std::vector<double>& tris, int64_t first, int64_t count, double* box) {
    V3 normal{0, 0, 0}, longest{0, 0, 0};
    for (int64_t t = first; t < first + count; ++t) {
        const V3 v[3] = {load3(tris.data(), 3 * t), load3(tris.data(), 3 * t + 1), load3(tris.data(), 3 * t + 2)};
        normal = normal + cross(v[1] - v[0], v[2] - v[0]);
        for (int e = 0; e < 3; ++e) {
            const V3 edge = v[(e + 1) % 3] - v[e];
            if (length_sq(edge) > length_sq(longest)) longest = edge;
        }
    }
    V3 n = normalized(normal);
    if (length_sq(n) == 0) n = {0, 0, 1};
    // The box is a lower bound only if its axes are orthonormal. An edge along n leaves a
    // projection that is rounding noise, not a direction: take any perpendicular then, and
    // re-project once more so that u is perpendicular to n to rounding.
    V3 perp = longest - n * dot(longest, n);
    if (!(length_sq(perp) > 1e-6 * length_sq(longest)))
        perp = std::abs(n.x) < 0.9 ? cross(n, V3{1, 0, 0}) : cross(n, V3{0, 1, 0});
    V3 u = normalized(perp);
    u = normalized(u - n * dot(u, n));
    const V3 axes[3] = {u, cross(n, u), n};
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int64_t i = 3 * first; i < 3 * (first + count); ++i)
        for (int k = 0; k < 3; ++k) {
            lo[k] = std::min(lo[k], dot(load3(tris.data(), i), axes[k]));
            hi[k] = std::max(hi[k], dot(load3(tris.data(), i), axes[k]));
        }
    V3 centre{0, 0, 0};
    double diagonal = 0;
    for (int k = 0; k < 3; ++k) {
        centre = centre + axes[k] * (0.5 * (lo[k] + hi[k]));
        diagonal += (hi[k] - lo[k]) * (hi[k] - lo[k]);
    }
    const double grow = 1e-6 * (std::sqrt(diagonal) + length(centre));
    store3(box, 0, centre);
    for (int k = 0; k < 3; ++k) {
        store3(box + 3, k, axes[k]);
        box[12 + k] = 0.5 * (hi[k] - lo[k]) + grow;
    }
    box[15] = 0;
}

}  // namespace build
}  // namespace nis
