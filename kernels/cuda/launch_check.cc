// ROTOR_CUDA_LAUNCHED's slow path and the ROTOR_CUDA_SYNC_CHECK switch
// (kernels/cuda/cuda_check.h).
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fault.h"

namespace rotor::cuda {

bool sync_check_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("ROTOR_CUDA_SYNC_CHECK");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

void after_launch(const char* kernel, cudaStream_t stream, cudaError_t launch_error, const char* file,
                  int line) {
  const int device = current_device_for_message();
  ROTOR_CHECK(launch_error == cudaSuccess)
      << "CUDA error on cuda:" << device << ": launch of " << kernel << " (" << file << ":" << line
      << ") failed: " << cudaGetErrorName(launch_error) << " (" << cudaGetErrorString(launch_error) << ")";
  if (!sync_check_enabled()) return;
  // Everything queued before this kernel was checked the same way after its
  // own launch, so an error here is this kernel's.
  cudaError_t err = cudaStreamSynchronize(stream);
  if (err == cudaSuccess) err = cudaGetLastError();
  ROTOR_CHECK(err == cudaSuccess)
      << "CUDA error on cuda:" << device << " in kernel " << kernel << " (launched at " << file << ":" << line
      << "): " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err)
      << ") [ROTOR_CUDA_SYNC_CHECK=1: the stream was synchronised right after this launch]";
  if (device >= 0) check_faults(device);
}

}  // namespace rotor::cuda
