// Device query for the CUDA backend. GPU tests call cuda_device_count() and
// skip with cuda_unavailable_reason() when it is 0.
#include <cuda_runtime.h>

#include "kernels/device.h"

namespace rotor {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device"/"no driver" error
    return 0;
  }
  return n;
}

int cuda_current_device() {
  int d = 0;
  if (cudaGetDevice(&d) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return d;
}

bool cuda_select_device(int index) {
  if (cudaSetDevice(index) == cudaSuccess) return true;
  cudaGetLastError();
  return false;
}

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device: ") + cudaGetErrorString(err);
  }
  return n == 0 ? "no CUDA device present" : "";
}

}  // namespace rotor
