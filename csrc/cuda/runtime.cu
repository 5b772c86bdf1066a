// CUDA runtime status, compiled only when nvcc builds the CUDA backend.
// cudart is linked statically, so this imports on machines with no driver:
// there cudaGetDeviceCount fails (error 35) and we report that in words.
#include <cuda_runtime.h>

#include "nis/launch.h"

namespace nis {

CudaStatus cuda_status() {
    CudaStatus s;
    s.built = true;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice) {
        cudaGetLastError();  // clear the sticky error
        s.reason = err == cudaErrorNoDevice ? "no CUDA device" : "no driver";
        return s;
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        s.reason = cudaGetErrorString(err);
        return s;
    }
    s.device_count = count;
    if (count == 0) {
        s.reason = "no CUDA device";
        return s;
    }
    int dev = 0;
    cudaGetDevice(&dev);
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
        s.device_name = prop.name;
        s.cc_major = prop.major;
        s.cc_minor = prop.minor;
    }
    s.available = true;
    return s;
}

}  // namespace nis
