// Built when ROTOR_WITH_CUDA is off: the device query answers "no GPU".
#include "kernels/device.h"

namespace rotor {

int cuda_device_count() { return 0; }
std::string cuda_unavailable_reason() { return "rotor was built without CUDA (ROTOR_CUDA=OFF or no nvcc)"; }

}  // namespace rotor
