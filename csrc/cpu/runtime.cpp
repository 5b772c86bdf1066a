// require_cuda() for both builds, and the CUDA status of a build without nvcc.
#include "nis/launch.h"

namespace nis {

#if !defined(NIS_WITH_CUDA)
CudaStatus cuda_status() {
    CudaStatus s;
    s.reason = "not built: " NIS_CUDA_BUILD_NOTE;
    return s;
}
#endif

void require_cuda(const char* what) {
    static const CudaStatus s = cuda_status();  // a process's devices do not change
    if (!s.available)
        throw std::runtime_error(std::string("nis_fast: ") + what + " needs a CUDA device, but CUDA is not available (" +
                                 s.reason + ")");
}

}  // namespace nis
