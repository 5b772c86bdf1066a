// Sphere tracing of the network's zero level set, one ray, written once for the
// CPU and CUDA backends; plus the pinhole camera and the shading of one pixel.
//
// Rays start where they enter the bounding sphere (radius ~1: the shape lies in
// the sphere of radius 0.9) and stop on a hit (|f| < eps), on leaving the sphere
// (miss) or after max_steps (miss). Steps are over-relaxed as in Keinert et al.,
// "Enhanced Sphere Tracing" (2014): step omega * f while consecutive unbounding
// spheres overlap; when they do not, the surface may have been skipped, so go
// back to the last safe point plus its plain step and continue with omega = 1.
// The network's output is tanh-bounded, so far from the surface a step is at
// most 1: a ray crosses the unit sphere in a handful of steps.
#pragma once
#include "nis/common.h"
#include "nis/mlp.h"

namespace nis {

using Vec3f = Vec3<float>;

NIS_HD Vec3f normalized(Vec3f v) { return v * (1.0f / std::sqrt(dot(v, v))); }

struct TraceSettings {
    float eps;           // hit when |f| < eps
    float relaxation;    // omega >= 1 (1 = plain sphere tracing)
    float bound_radius;  // rays are traced inside this sphere only
    int max_steps;       // network evaluations per ray, fallbacks included
};

struct TraceResult {
    float t;    // distance along the (unit) ray direction to the hit
    int steps;  // network evaluations used
    bool hit;
};

// Entry and exit distances of the ray o + t d (|d| = 1) through the sphere of
// radius r at the origin; false when the ray misses it or it lies behind.
NIS_HD bool ray_sphere_interval(Vec3f o, Vec3f d, float r, float* t_in, float* t_out) {
    const float b = dot(o, d);
    const float c = dot(o, o) - r * r;
    const float disc = b * b - c;
    if (disc < 0.0f) return false;
    const float s = std::sqrt(disc);
    *t_in = nis_max(-b - s, 0.0f);
    *t_out = -b + s;
    return *t_out > *t_in;
}

NIS_HD TraceResult sphere_trace(const float* params, Vec3f o, Vec3f d, const TraceSettings& s) {
    TraceResult r{0.0f, 0, false};
    float t, t_out;
    if (!ray_sphere_interval(o, d, s.bound_radius, &t, &t_out)) return r;
    float omega = s.relaxation;
    float sign = 0.0f;        // sign of f where the ray enters: we trace towards its zero crossing
    float prev_radius = 0.0f;
    float step = 0.0f;
    for (int i = 0; i < s.max_steps; ++i) {
        const float f = mlp_sdf(params, o + d * t);
        r.steps = i + 1;
        if (i == 0) sign = f < 0.0f ? -1.0f : 1.0f;
        const float signed_radius = sign * f;
        const float radius = std::fabs(f);
        if (omega > 1.0f && radius + prev_radius < step) {
            // Over-relaxed step overshot the safe region: back to the safe step.
            t += prev_radius - step;
            step = prev_radius;
            omega = 1.0f;
            continue;
        }
        if (radius < s.eps) {
            r.hit = true;
            r.t = t;
            return r;
        }
        step = signed_radius * omega;
        prev_radius = radius;
        t += step;
        if (t > t_out) break;
    }
    return r;
}

// Pinhole camera: pixel (px, py) (row py from the top) looks along
// forward + u * right + v * up, u, v in [-1, 1]; right and up are scaled by
// tan(fov_y / 2) (and right also by the aspect ratio) on the host.
struct PinholeCamera {
    Vec3f eye, forward, right, up;
    int width, height;
};

NIS_HD Vec3f camera_ray(const PinholeCamera& c, int px, int py) {
    const float u = 2.0f * (static_cast<float>(px) + 0.5f) / static_cast<float>(c.width) - 1.0f;
    const float v = 1.0f - 2.0f * (static_cast<float>(py) + 0.5f) / static_cast<float>(c.height);
    return normalized(c.forward + c.right * u + c.up * v);
}

enum ShadingMode : int { kShadeLambert = 0, kShadeNormals = 1, kShadeDepth = 2 };

struct ShadeSettings {
    int mode;               // ShadingMode
    Vec3f light;            // unit direction towards the light (lambert)
    Vec3f albedo;           // [0, 1] (lambert)
    Vec3f background;       // [0, 1]
    float ambient;          // lambert: ambient + (1 - ambient) * max(0, n.l)
    int ao_samples;         // ambient occlusion samples along the normal (0 = off)
    float ao_step;          // spacing of those samples
    float depth_near, depth_far;  // depth shading: white at near, black at far
};

// Cheap ambient occlusion (Evans 2006): how much the SDF at a few points along
// the normal falls short of their distance from the surface, weighted 1/2^k.
NIS_HD float ambient_occlusion(const float* params, Vec3f p, Vec3f n, const ShadeSettings& s) {
    float occlusion = 0.0f, weight = 0.5f;
    for (int k = 1; k <= s.ao_samples; ++k) {
        const float delta = s.ao_step * static_cast<float>(k);
        occlusion += weight * (delta - mlp_sdf(params, p + n * delta)) / s.ao_step;
        weight *= 0.5f;
    }
    return nis_clamp(1.0f - occlusion, 0.0f, 1.0f);
}

NIS_HD Vec3f shade_hit(const float* params, Vec3f p, Vec3f d, Vec3f normal, float t, const ShadeSettings& s) {
    if (s.mode == kShadeNormals) return normal * 0.5f + make_vec3(0.5f, 0.5f, 0.5f);
    if (s.mode == kShadeDepth) {
        const float g = nis_clamp((s.depth_far - t) / (s.depth_far - s.depth_near), 0.0f, 1.0f);
        return make_vec3(g, g, g);
    }
    const Vec3f n = dot(normal, d) > 0.0f ? normal * -1.0f : normal;  // lit from the viewer's side
    float light = s.ambient + (1.0f - s.ambient) * nis_max(dot(n, s.light), 0.0f);
    if (s.ao_samples > 0) light *= ambient_occlusion(params, p, n, s);
    return s.albedo * light;
}

// Where shade_pixel writes; any pointer may be null (that buffer is skipped).
struct RenderBuffers {
    uint8_t* image;   // [H, W, 3] RGB
    float* depth;     // [H, W] distance along the ray, +inf on a miss
    float* normal;    // [H, W, 3] unit gradient direction, 0 on a miss
    uint8_t* hit;     // [H, W] 1 on a hit
};

NIS_HD uint8_t to_byte(float c) { return static_cast<uint8_t>(nis_clamp(c, 0.0f, 1.0f) * 255.0f + 0.5f); }

// A pixel is rendered in two passes, so that the GPU can run the tracing loop
// (forward passes only, few registers) apart from the shading (gradient, AO).
// Pass 1: distance along the pixel's ray to the hit, or -1 on a miss.
NIS_HD float trace_pixel(const float* params, const PinholeCamera& cam, const TraceSettings& ts, int px, int py) {
    const TraceResult r = sphere_trace(params, cam.eye, camera_ray(cam, px, py), ts);
    return r.hit ? r.t : -1.0f;
}

// Pass 2: shade the pixel traced to `t` and write the buffers.
NIS_HD void shade_pixel(const float* params, const PinholeCamera& cam, const ShadeSettings& ss, int px, int py,
                        float t, const RenderBuffers& out) {
    const bool hit = t >= 0.0f;
    const int64_t i = static_cast<int64_t>(py) * cam.width + px;
    Vec3f color = ss.background, normal = make_vec3(0.0f, 0.0f, 0.0f);
    if (hit) {
        const Vec3f d = camera_ray(cam, px, py);
        const Vec3f p = cam.eye + d * t;
        Vec3f g;
        mlp_sdf_grad(params, p, &g);
        const float len = length(g);
        if (len > 0.0f) normal = g * (1.0f / len);
        color = shade_hit(params, p, d, normal, t, ss);
    }
    if (out.image) {
        out.image[3 * i] = to_byte(color.x);
        out.image[3 * i + 1] = to_byte(color.y);
        out.image[3 * i + 2] = to_byte(color.z);
    }
    if (out.depth) out.depth[i] = hit ? t : INFINITY;
    if (out.normal) store3(out.normal, i, normal);
    if (out.hit) out.hit[i] = hit ? 1 : 0;
}

}  // namespace nis
