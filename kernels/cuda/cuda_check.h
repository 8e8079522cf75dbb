// CHECK for CUDA runtime, cuBLAS(Lt) calls: on failure the process aborts
// (kernels/check.h: host, pid, file:line) with the device, the failing call
// and the library's error name and text.
//
//   ROTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
//   ROTOR_CUBLAS_CHECK(cublasLtMatmul(...));
//   kernel<<<grid, block, 0, stream>>>(...);
//   ROTOR_CUDA_LAUNCHED("kernel", stream);           // after every kernel launch
//
// ROTOR_CUDA_LAUNCHED checks the launch (cudaGetLastError). A fault while the
// kernel runs (an illegal address, a trap) is asynchronous: without more it
// surfaces at the next synchronising call, in whatever op happens to make it.
// With ROTOR_CUDA_SYNC_CHECK=1 in the environment (read once per process) it
// also synchronises `stream` right after the launch and checks the result and
// the device's fault records (kernels/cuda/fault.h), so the failure names the
// kernel that made it (and its launcher's file:line). That serialises the
// host with the GPU: a debugging and bring-up switch (tests/gpu/stages/parity),
// not for training. Off, the cost is one cudaGetLastError and a load of a
// cached flag.
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

// ROTOR_CUDA_SYNC_CHECK=1 (launch_check.cc; the environment is read once).
bool sync_check_enabled();

// The slow path of ROTOR_CUDA_LAUNCHED: fails on `launch_error`, else
// (sync check) synchronises `stream` and fails, naming `kernel`, on its error
// or on a recorded device fault.
void after_launch(const char* kernel, cudaStream_t stream, cudaError_t launch_error, const char* file,
                  int line);

}  // namespace rotor::cuda

#define ROTOR_CUDA_LAUNCHED(kernel, stream)                                                          \
  do {                                                                                               \
    const cudaError_t rotor_launch_err_ = cudaGetLastError();                                        \
    if (rotor_launch_err_ != cudaSuccess || ::rotor::cuda::sync_check_enabled())                     \
      ::rotor::cuda::after_launch(kernel, stream, rotor_launch_err_, __FILE__, __LINE__);            \
  } while (0)

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
