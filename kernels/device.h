// Which accelerators this process can use. Built with or without CUDA.
#pragma once

#include <string>

namespace rotor {

// Number of CUDA devices usable by this process (0 without CUDA or a driver).
int cuda_device_count();
// Why there is no GPU to use, for test skip messages ("" when there is one).
std::string cuda_unavailable_reason();

}  // namespace rotor
