// Which accelerators this process can use. Built with or without CUDA.
#pragma once

#include <string>

namespace rotor {

// Number of CUDA devices usable by this process (0 without CUDA or a driver).
int cuda_device_count();
// Why there is no GPU to use, for test skip messages ("" when there is one).
std::string cuda_unavailable_reason();
// The calling thread's current CUDA device (cudaGetDevice: 0 until a
// cudaSetDevice, e.g. the one parallel/world.h's ProcessWorld::use_device
// makes); -1 without CUDA.
int cuda_current_device();
// Makes `index` the calling thread's current device; false (with CUDA's
// error cleared) when it cannot.
bool cuda_select_device(int index);

}  // namespace rotor
