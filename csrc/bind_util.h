// Helpers shared by the bind_*.cpp files: raw pointers in, one dtype switch,
// and CUDA entries that raise a clear error in a build without nvcc.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "nis/launch.h"

namespace nis {
namespace py = pybind11;

template <typename T> inline T* ptr(std::uintptr_t p) { return reinterpret_cast<T*>(p); }

// Python passes device as "cpu" or "cuda"; anything else is a programming error upstream.
inline bool is_cuda(const std::string& device) {
    if (device == "cuda") return true;
    if (device == "cpu") return false;
    throw std::invalid_argument("nis_fast._C: unknown device '" + device + "' (expected 'cpu' or 'cuda')");
}

// Calls `f(tag)` with tag a float or double value, picked by dtype name.
template <typename F> inline void dispatch_float(const std::string& dtype, F&& f) {
    if (dtype == "float32") f(float{});
    else if (dtype == "float64") f(double{});
    else throw std::invalid_argument("nis_fast._C: unsupported dtype '" + dtype + "' (expected float32 or float64)");
}

}  // namespace nis

// Wrap a CUDA launcher call: compiled in only when the CUDA backend is built.
#if defined(NIS_WITH_CUDA)
#define NIS_CUDA_ONLY(...) __VA_ARGS__
#else
#define NIS_CUDA_ONLY(...)                                                                              \
    throw std::runtime_error(std::string("nis_fast was built without CUDA (" NIS_CUDA_BUILD_NOTE "); ") + \
                             "reinstall with nvcc on PATH or NIS_FAST_CUDA=1")
#endif
