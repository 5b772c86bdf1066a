// BVH build on the CPU: binned SAH over triangle centroids, depth-first node
// order, leaf triangles reordered to lie contiguously, collapsed into the 8-wide
// tree; then the packets, and the float32 copies of the float64 arrays. The other
// steps of the build are listed in bvh_build.h.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <utility>

#include "bvh_build.h"

namespace nis {
namespace {

using namespace build;

// float bounds that still contain the double ones (lo rounded down, hi up).
float round_down(double x) {
    float f = static_cast<float>(x);
    return static_cast<double>(f) > x ? std::nextafter(f, -INFINITY) : f;
}
float round_up(double x) {
    float f = static_cast<float>(x);
    return static_cast<double>(f) < x ? std::nextafter(f, INFINITY) : f;
}

constexpr int kBins = 32;
constexpr int32_t kParallelBuild = 1 << 12;  // triangles in a subtree worth a task of its own

// Leaf packets that hold n triangles.
double packets(int32_t n) { return double((n + kLanes - 1) / kLanes); }

struct Builder {
    const double* V;
    const int32_t* F;
    int leaf_size;
    std::vector<Box> tri_box;
    std::vector<std::array<double, 3>> centroid;
    std::vector<int32_t> order;  // BVH position -> original face
    std::vector<BinaryNode> nodes;

    const double* vert(int32_t f, int corner) const { return V + 3 * static_cast<int64_t>(F[3 * int64_t(f) + corner]); }

    // Returns the split position in [first+1, first+count-1].
    int32_t split(int32_t first, int32_t count, const Box& cbox, int depth) {
        int32_t* begin = order.data() + first;
        int32_t* end = begin + count;
        int axis = 0;
        for (int k = 1; k < 3; ++k)
            if (cbox.hi[k] - cbox.lo[k] > cbox.hi[axis] - cbox.lo[axis]) axis = k;
        const double extent = cbox.hi[axis] - cbox.lo[axis];
        // Median split when the SAH cannot separate the centroids, or when the
        // remaining depth budget could run out (keeps depth <= kBvhMaxDepth).
        const int needed = static_cast<int>(std::ceil(std::log2(double(count)))) + 1;
        auto median_split = [&] {
            std::nth_element(begin, begin + count / 2, end,
                             [&](int32_t x, int32_t y) { return centroid[x][axis] < centroid[y][axis]; });
            return first + count / 2;
        };
        if (!(extent > 0) || depth + needed >= kBvhMaxDepth) return median_split();
        double best_cost = INFINITY;
        int best_axis = -1, best_bin = -1;
        for (int k = 0; k < 3; ++k) {
            const double ext = cbox.hi[k] - cbox.lo[k];
            if (!(ext > 0)) continue;
            const double scale = kBins / ext;
            Box bins[kBins];
            int32_t counts[kBins] = {};
            for (int32_t* it = begin; it != end; ++it) {
                const int b = std::min(kBins - 1, static_cast<int>((centroid[*it][k] - cbox.lo[k]) * scale));
                counts[b]++;
                bins[b].grow(tri_box[*it]);
            }
            // Sweep: right-side costs first, then left side while scanning. A side costs its area
            // times its packets, not its triangles: a leaf's kLanes triangles are tested at once, so
            // 5 triangles cost as much as 8.
            double right_cost[kBins];
            Box acc;
            int32_t n_acc = 0;
            for (int b = kBins - 1; b > 0; --b) {
                acc.grow(bins[b]);
                n_acc += counts[b];
                right_cost[b] = n_acc ? acc.half_area() * packets(n_acc) : 0.0;
            }
            acc = Box();
            n_acc = 0;
            for (int b = 0; b < kBins - 1; ++b) {
                acc.grow(bins[b]);
                n_acc += counts[b];
                if (n_acc == 0 || n_acc == count) continue;
                const double cost = acc.half_area() * packets(n_acc) + right_cost[b + 1];
                if (cost < best_cost) {
                    best_cost = cost;
                    best_axis = k;
                    best_bin = b;
                }
            }
        }
        // No finite cost (areas overflow at coordinates near 1e154 and beyond): fall back.
        if (best_axis < 0) return median_split();
        const double scale = kBins / (cbox.hi[best_axis] - cbox.lo[best_axis]);
        const double lo = cbox.lo[best_axis];
        int32_t* mid = std::partition(begin, end, [&](int32_t t) {
            return std::min(kBins - 1, static_cast<int>((centroid[t][best_axis] - lo) * scale)) <= best_bin;
        });
        return first + static_cast<int32_t>(mid - begin);
    }

    // Appends the subtree over order[first, first + count) to `out` depth-first (a node, its
    // left subtree, its right subtree) and returns the index of its root there. Halves of
    // kParallelBuild triangles or more are built as OpenMP tasks into vectors of their own and
    // spliced in after: the same nodes in the same order as a serial build, at any thread count
    // (the halves partition disjoint ranges of `order`). Call inside a parallel region; an
    // exception (std::bad_alloc) reaches the caller once the tasks it started have finished.
    int32_t build(std::vector<BinaryNode>& out, int32_t first, int32_t count, int depth) {
        Box box, cbox;
        for (int32_t i = first; i < first + count; ++i) {
            box.grow(tri_box[order[i]]);
            cbox.grow(centroid[order[i]].data());
        }
        const int32_t idx = static_cast<int32_t>(out.size());
        out.push_back({box, -1, -1, first, count});
        if (count <= leaf_size) return idx;
        const int32_t mid = split(first, count, cbox, depth);
        int32_t left, right;
        if (count >= kParallelBuild) {
            // An exception must not leave the task (that ends the process), nor this frame
            // before the task is done with the vectors: both halves catch, and rethrow after.
            std::vector<BinaryNode> left_nodes, right_nodes;
            std::exception_ptr left_error, right_error;
#pragma omp task default(shared)
            try {
                build(left_nodes, first, mid - first, depth + 1);
            } catch (...) {
                left_error = std::current_exception();
            }
            try {
                build(right_nodes, mid, first + count - mid, depth + 1);
            } catch (...) {
                right_error = std::current_exception();
            }
#pragma omp taskwait
            if (left_error) std::rethrow_exception(left_error);
            if (right_error) std::rethrow_exception(right_error);
            left = splice(out, left_nodes);
            right = splice(out, right_nodes);
        } else {
            left = build(out, first, mid - first, depth + 1);
            right = build(out, mid, first + count - mid, depth + 1);
        }
        out[idx].left = left;
        out[idx].right = right;
        return idx;
    }

    // Appends a subtree built on its own (child indices relative to it); returns its root's index.
    static int32_t splice(std::vector<BinaryNode>& out, const std::vector<BinaryNode>& part) {
        const int32_t offset = static_cast<int32_t>(out.size());
        for (BinaryNode n : part) {
            if (!n.leaf()) {
                n.left += offset;
                n.right += offset;
            }
            out.push_back(n);
        }
        return offset;
    }
};

// One lane of a triangle packet (see PacketField in bvh.h), computed in float64.
void fill_packet_lane(double* packet, int lane, V3 a, V3 b, V3 c) {
    const V3 ab = b - a, ac = c - a, bc = c - b, n = cross(ab, ac);
    const double n2 = length_sq(n);
    // The same flatness test as closest_point_on_triangle: a sliver has no face region.
    const bool flat = n2 > degenerate_sin2<double>() * length_sq(ab) * length_sq(ac);
    const V3 zero{0, 0, 0};
    const V3 fields[6] = {a, b, c, flat ? n * (1.0 / std::sqrt(n2)) : zero, flat ? cross(ac, n) * (1.0 / n2) : zero,
                          flat ? cross(n, ab) * (1.0 / n2) : zero};
    for (int f = 0; f < 6; ++f) {
        packet[(3 * f + 0) * kLanes + lane] = fields[f].x;
        packet[(3 * f + 1) * kLanes + lane] = fields[f].y;
        packet[(3 * f + 2) * kLanes + lane] = fields[f].z;
    }
    const auto inv = [](V3 e) { return length_sq(e) > 0 ? 1.0 / length_sq(e) : 0.0; };
    packet[kPacketInvAB * kLanes + lane] = inv(ab);
    packet[kPacketInvAC * kLanes + lane] = inv(ac);
    packet[kPacketInvBC * kLanes + lane] = inv(bc);
    packet[kPacketFaceMax * kLanes + lane] = flat ? 1.0 : -1.0;
}

// Collapse of the binary tree into the wide one: a wide node takes a binary
// node's two children, then keeps opening inner children until it has kChildren
// of them. Children keep their box and expansion, and get an oriented box.
struct WideBuilder {
    const Builder& bd;
    const std::vector<int32_t>& leaf_packet;
    const std::vector<double>& binary_fwn;
    const std::vector<double>& tris;  // BVH order, compact
    std::vector<BvhNode> nodes;
    std::vector<double> fwn;    // [node, child, kFwnStride]
    std::vector<std::pair<int64_t, int32_t>> box_of;  // (node * kChildren + child, binary node)
    int32_t max_depth = 0;

    int32_t collapse(int32_t b, int32_t depth) {
        max_depth = std::max(max_depth, depth);
        const BinaryNode& root = bd.nodes[b];
        int32_t kids[kChildren], kid_level[kChildren];  // binary node, levels below b
        int n = 0;
        if (root.leaf()) {
            kids[n] = b;  // a tree of one leaf
            kid_level[n++] = 0;
        } else {
            kids[n] = root.left;
            kid_level[n++] = 1;
            kids[n] = root.right;
            kid_level[n++] = 1;
        }
        // Open the shallowest inner child (the largest by area among those): every inner
        // child then lies two binary levels down or more, so the wide tree has at most
        // kBvhMaxDepth / 2 + 1 levels (the bound the traversal stack is sized for).
        while (n < kChildren) {
            int open = -1;
            for (int k = 0; k < n; ++k) {
                if (bd.nodes[kids[k]].leaf()) continue;
                if (open < 0 || kid_level[k] < kid_level[open] ||
                    (kid_level[k] == kid_level[open] &&
                     bd.nodes[kids[k]].box.half_area() > bd.nodes[kids[open]].box.half_area()))
                    open = k;
            }
            if (open < 0) break;
            const BinaryNode& o = bd.nodes[kids[open]];
            kid_level[open] += 1;
            kids[open] = o.left;
            kids[n] = o.right;
            kid_level[n] = kid_level[open];
            ++n;
        }
        const int32_t idx = static_cast<int32_t>(nodes.size());
        nodes.emplace_back();
        fwn.resize(fwn.size() + kChildren * kFwnStride, 0.0);
        for (int k = 0; k < n; ++k) box_of.push_back({int64_t(idx) * kChildren + k, kids[k]});
        for (int k = 0; k < kChildren; ++k) {
            BvhNode& node = nodes[idx];
            node.unused[k] = 0;
            if (k >= n) {
                for (int axis = 0; axis < 3; ++axis) {
                    node.lo[axis][k] = INFINITY;
                    node.hi[axis][k] = -INFINITY;
                }
                node.child[k] = kEmptyChild;
                continue;
            }
            const BinaryNode& c = bd.nodes[kids[k]];
            for (int axis = 0; axis < 3; ++axis) {
                node.lo[axis][k] = round_down(c.box.lo[axis]);
                node.hi[axis][k] = round_up(c.box.hi[axis]);
            }
            std::copy_n(binary_fwn.data() + int64_t(kids[k]) * kFwnStride, kFwnStride,
                        fwn.data() + (int64_t(idx) * kChildren + k) * kFwnStride);
            // Recursion grows `nodes`: the reference above is not used past this point.
            node.child[k] = c.leaf() ? leaf_ref(leaf_packet[kids[k]], c.count) : kEmptyChild;
        }
        for (int k = 0; k < n; ++k) {
            if (bd.nodes[kids[k]].leaf()) continue;
            const int32_t child = collapse(kids[k], depth + 1);
            nodes[idx].child[k] = child;
        }
        return idx;
    }

    // The oriented boxes of all children, [node, kBoxSize, kChildren] (zeros for empty children).
    std::vector<double> child_boxes() const {
        std::vector<double> boxes(nodes.size() * kBoxSize * kChildren, 0.0);
#pragma omp parallel for schedule(dynamic, 64)
        for (int64_t j = 0; j < static_cast<int64_t>(box_of.size()); ++j) {
            const int64_t node = box_of[j].first / kChildren, k = box_of[j].first % kChildren;
            const BinaryNode& c = bd.nodes[box_of[j].second];
            double box[kBoxSize];
            oriented_box(tris, c.first, c.count, box);
            for (int f = 0; f < kBoxSize; ++f) boxes[(node * kBoxSize + f) * kChildren + k] = box[f];
        }
        return boxes;
    }
};

template <typename Dst>
std::vector<Dst> convert(const std::vector<double>& src) {
    std::vector<Dst> out(src.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(src.size()); ++i) out[i] = static_cast<Dst>(src[i]);
    return out;
}

// The float32 arrays, rounded from the float64 ones.
void fill_float32(MeshBvhHost& h) {
    h.f.child_boxes = convert<float>(h.d.child_boxes);
    h.f.packets = convert<float>(h.d.packets);
    h.f.pseudonormal_table = convert<float>(h.d.pseudonormal_table);
    h.f.fwn = convert<float>(h.d.fwn);
    // The float far-field radius is rounded up so the "far enough" test stays conservative.
    for (size_t i = 0; i < h.f.fwn.size(); i += kFwnStride) h.f.fwn[i + 6] = round_up(h.d.fwn[i + 6]);
}

// The tree and its float64 arrays (no float32 copies, no pseudonormal certificate); the
// union-find piece of each face is left in `face_piece`.
MeshBvhHost build_float64(const double* vertices, int64_t nv, const int32_t* faces, int64_t nf, int leaf_size,
                          std::vector<int64_t>& face_piece) {
    if (nf <= 0) throw std::invalid_argument("build_mesh_bvh: the mesh has no faces");
    if (nf >= (int64_t(1) << 30)) throw std::invalid_argument("build_mesh_bvh: too many faces (max 2^30)");
    if (leaf_size < 1 || leaf_size > kLanes)
        throw std::invalid_argument("build_mesh_bvh: leaf_size must be in [1, 4] (a leaf is one triangle packet)");
    // Work on the mesh times a power of two that brings its largest coordinate to [1, 2) (exact).
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < 3 * nv; ++i) {
        lo = std::min(lo, vertices[i]);
        hi = std::max(hi, vertices[i]);
    }
    const double extent = std::max(std::abs(lo), std::abs(hi));
    const double scale = extent > 0 && std::isfinite(extent)
                             ? std::ldexp(1.0, std::clamp(-std::ilogb(extent), -100, 100))
                             : 1.0;
    std::vector<double> scaled(vertices, vertices + 3 * nv);
    for (double& x : scaled) x *= scale;
    Builder bd{scaled.data(), faces, leaf_size};
    bd.tri_box.resize(nf);
    bd.centroid.resize(nf);
    bd.order.resize(nf);
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < nf; ++f) {
        Box b;
        std::array<double, 3> c{0, 0, 0};
        for (int k = 0; k < 3; ++k) {
            const double* p = bd.vert(f, k);
            b.grow(p);
            for (int j = 0; j < 3; ++j) c[j] += p[j] / 3.0;
        }
        bd.tri_box[f] = b;
        bd.centroid[f] = c;
        bd.order[f] = static_cast<int32_t>(f);
    }
    bd.nodes.reserve(2 * nf / std::max(1, leaf_size / 2) + 1);
    std::exception_ptr build_error;  // rethrown outside the parallel region (it must not leave one)
#pragma omp parallel
#pragma omp single
    try {
        bd.build(bd.nodes, 0, static_cast<int32_t>(nf), 0);
    } catch (...) {
        build_error = std::current_exception();
    }
    if (build_error) std::rethrow_exception(build_error);

    MeshBvhHost h;
    h.scale = scale;
    h.num_faces = nf;
    h.leaf_size = leaf_size;
    std::vector<double> tris(static_cast<size_t>(nf) * 9);  // BVH order, compact
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nf; ++i)
        for (int c = 0; c < 3; ++c)
            for (int k = 0; k < 3; ++k) tris[9 * i + 3 * c + k] = bd.vert(bd.order[i], c)[k];
    const EdgePairing edges = pair_edges(faces, nf, nv);
    Topology topo = mesh_topology(faces, nf, edges);
    h.closed = topo.closed;
    Pseudonormals pn = compute_pseudonormals(bd.V, nv, faces, nf, bd.order, edges, topo);  // BVH order
    h.d.pseudonormal_table = std::move(pn.table);
    std::vector<double> fwn;
    compute_fwn(bd.nodes, tris, fwn);
    double area = 0.0;
    for (int64_t i = 0; i < nf; ++i) {  // in order: the same sum at any thread count
        const V3 a = load3(tris.data(), 3 * i), b = load3(tris.data(), 3 * i + 1), c = load3(tris.data(), 3 * i + 2);
        area += 0.5 * length(cross(b - a, c - a));
    }
    h.outside_dist_sq = area / 3.141592653589793;

    // Give every leaf a packet of its own: leaf triangles move to slots from kLanes * (leaf number).
    std::vector<int32_t> leaf_packet(bd.nodes.size(), -1);
    int32_t num_packets = 0;
    for (size_t i = 0; i < bd.nodes.size(); ++i)
        if (bd.nodes[i].leaf()) leaf_packet[i] = num_packets++;
    const int64_t slots = int64_t(num_packets) * kLanes;
    // Leaf references and slots are int32 (see leaf_ref in bvh.h).
    if (slots > INT32_MAX) throw std::invalid_argument("build_mesh_bvh: too many faces (max 2^29 leaves)");
    h.face_ids.assign(slots, -1);
    h.d.packets.assign(static_cast<size_t>(num_packets) * kPacketSize, 0.0);
    h.pseudonormal_ids.assign(static_cast<size_t>(slots) * kPseudonormalSlots, 0);
    h.pseudonormal_unsafe.assign(slots, 1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(bd.nodes.size()); ++i) {
        const BinaryNode& n = bd.nodes[i];
        if (!n.leaf()) continue;
        const int64_t slot = int64_t(leaf_packet[i]) * kLanes;
        double* packet = h.d.packets.data() + int64_t(leaf_packet[i]) * kPacketSize;
        for (int lane = 0; lane < kLanes; ++lane) {
            const int64_t t = n.first + (lane < n.count ? lane : 0);
            const V3 a = load3(tris.data(), 3 * t), b = load3(tris.data(), 3 * t + 1), c = load3(tris.data(), 3 * t + 2);
            if (lane < n.count) {
                fill_packet_lane(packet, lane, a, b, c);
                h.face_ids[slot + lane] = bd.order[t];
                h.pseudonormal_unsafe[slot + lane] = pn.unsafe[t];
                std::copy_n(pn.ids.data() + t * kPseudonormalSlots, kPseudonormalSlots,
                            h.pseudonormal_ids.data() + (slot + lane) * kPseudonormalSlots);
            } else {
                fill_packet_lane(packet, lane, a, a, a);  // unused lane
            }
        }
    }
    WideBuilder wide{bd, leaf_packet, fwn, tris};
    wide.collapse(0, 1);
    if (wide.max_depth > kWideMaxDepth) throw std::logic_error("build_mesh_bvh: wide tree deeper than the stack bound");
    h.depth = wide.max_depth;
    h.d.child_boxes = wide.child_boxes();
    h.nodes = std::move(wide.nodes);
    h.d.fwn = std::move(wide.fwn);
    face_piece = std::move(topo.face_piece);
    return h;
}

}  // namespace

MeshBvhHost build_mesh_bvh(const double* vertices, int64_t nv, const int32_t* faces, int64_t nf, int leaf_size,
                           bool keep_float64) {
    std::vector<int64_t> face_piece;
    MeshBvhHost h = build_float64(vertices, nv, faces, nf, leaf_size, face_piece);
    fill_float32(h);
    h.pseudonormal_exact = pseudonormal_sign_is_exact(h, faces, face_piece);  // reads the float64 arrays
    if (!keep_float64) {
        h.source_vertices.assign(vertices, vertices + 3 * nv);
        h.source_faces.assign(faces, faces + 3 * nf);
        h.d = PrecisionArrays<double>();  // frees them
    }
    return h;
}

namespace {
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {  // NaN included
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
template <typename T>
int64_t bytes_of(const std::vector<T>& v) {
    return int64_t(v.size() * sizeof(T));
}
}  // namespace

void add_float64(MeshBvhHost& h) {
    if (h.has_float64()) return;
    std::vector<int64_t> face_piece;
    MeshBvhHost full = build_float64(h.source_vertices.data(), int64_t(h.source_vertices.size() / 3),
                                     h.source_faces.data(), h.num_faces, h.leaf_size, face_piece);
    // The same tree, and float64 arrays that round to the float32 ones kept: else the queries of
    // the two precisions would disagree (the build is deterministic at any thread count).
    fill_float32(full);
    const bool same = same_bits(full.nodes, h.nodes) && same_bits(full.face_ids, h.face_ids) &&
                      same_bits(full.pseudonormal_ids, h.pseudonormal_ids) && same_bits(full.f.packets, h.f.packets) &&
                      same_bits(full.f.child_boxes, h.f.child_boxes) &&
                      same_bits(full.f.pseudonormal_table, h.f.pseudonormal_table) && same_bits(full.f.fwn, h.f.fwn);
    if (!same) throw std::logic_error("add_float64: the rebuilt BVH differs from the first build");
    h.d = std::move(full.d);
    std::vector<double>().swap(h.source_vertices);
    std::vector<int32_t>().swap(h.source_faces);
}

int64_t MeshBvhHost::nbytes() const {
    return bytes_of(nodes) + bytes_of(face_ids) + bytes_of(pseudonormal_unsafe) + bytes_of(pseudonormal_ids) +
           f.nbytes() + d.nbytes() + bytes_of(source_vertices) + bytes_of(source_faces);
}

template <>
MeshView<float> MeshBvhHost::view<float>() const {
    return make_mesh_view<float>(*this, *this, f);
}
template <>
MeshView<double> MeshBvhHost::view<double>() const {
    if (!has_float64()) throw std::logic_error("MeshBvhHost: float64 view of a BVH without float64 arrays (add_float64)");
    return make_mesh_view<double>(*this, *this, d);
}

}  // namespace nis
