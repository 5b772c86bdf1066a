// Host-side launch helpers shared by the CPU (OpenMP) and CUDA backends.
// Backends are thin: a loop or a kernel around one NIS_HD function.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace nis {

// Status of the CUDA runtime on this machine, as plain data (no CUDA types),
// so the bindings compile the same with and without nvcc.
struct CudaStatus {
    bool built = false;      // were the .cu sources compiled into this module
    bool available = false;  // is there a usable device right now
    int device_count = 0;
    std::string reason;      // why not, in words, when !available
    std::string device_name;
    int cc_major = 0, cc_minor = 0;
};

CudaStatus cuda_status();

// Throws std::runtime_error with a readable message unless a CUDA device can be used.
void require_cuda(const char* what);

}  // namespace nis

#if defined(__CUDACC__)
#include <cuda_runtime.h>
namespace nis {
// Raise a CUDA error as a readable exception, clearing it first so that the next call's
// cudaGetLastError() does not report it again (the static cudart's error state is this module's own).
inline void check_cuda(cudaError_t err, const char* what) {
    if (err != cudaSuccess) {
        cudaGetLastError();
        throw std::runtime_error(std::string("nis_fast CUDA error in ") + what + ": " + cudaGetErrorString(err));
    }
}
inline unsigned grid_for(int64_t n, int block) { return static_cast<unsigned>((n + block - 1) / block); }
}  // namespace nis
#endif
