// CHECK for CUDA runtime, cuBLAS(Lt) calls: on failure the process aborts
// (kernels/check.h: host, pid, file:line) with the device, the failing call
// and the library's error name and text.
//
//   ROTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
//   ROTOR_CUDA_CHECK(cudaGetLastError());            // after a kernel launch
//   ROTOR_CUBLAS_CHECK(cublasLtMatmul(...));
// Usable from .cu (C++17) and .cc files.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/check.h"

namespace rotor::cuda {

// The current device, or -1 when none can be queried (for messages).
inline int current_device_for_message() {
  int d = -1;
  if (cudaGetDevice(&d) != cudaSuccess) d = -1;
  return d;
}

}  // namespace rotor::cuda

#define ROTOR_CUDA_CHECK(call)                                                              \
  do {                                                                                      \
    const cudaError_t rotor_cuda_err_ = (call);                                             \
    ROTOR_CHECK(rotor_cuda_err_ == cudaSuccess)                                             \
        << "CUDA error on cuda:" << ::rotor::cuda::current_device_for_message() << ": "     \
        << #call << " returned " << cudaGetErrorName(rotor_cuda_err_) << " ("               \
        << cudaGetErrorString(rotor_cuda_err_) << ")";                                      \
  } while (0)

// cuBLAS / cuBLASLt status (cublasStatus_t); the caller includes the header.
#define ROTOR_CUBLAS_CHECK(call)                                                            \
  do {                                                                                      \
    const auto rotor_cublas_status_ = (call);                                               \
    ROTOR_CHECK(rotor_cublas_status_ == CUBLAS_STATUS_SUCCESS)                              \
        << "cuBLAS error on cuda:" << ::rotor::cuda::current_device_for_message() << ": "   \
        << #call << " returned " << cublasGetStatusName(rotor_cublas_status_) << " ("       \
        << cublasGetStatusString(rotor_cublas_status_) << ")";                              \
  } while (0)
