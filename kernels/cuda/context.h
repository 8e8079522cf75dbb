// Per-device CUDA context of the backend: the compute stream every op on the
// device is queued on, and the cuBLASLt handle with its workspace. Created on
// first use of a device (once per process and device, like the driver's own
// context); not parallel state: which device a rank uses is passed explicitly
// through Tensor::device().
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace rotor::cuda {

struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;     // the compute stream
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;         // cuBLASLt workspace
  size_t workspace_bytes = 0;
};

// The context of `device`; makes it the current device of the calling thread.
DeviceContext& device_context(int device);

// Waits until everything queued on the device's compute stream is done.
void synchronize(int device);

}  // namespace rotor::cuda
