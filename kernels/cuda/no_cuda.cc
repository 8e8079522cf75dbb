// Built when ROTOR_WITH_CUDA is off: the device query answers "no GPU" and
// the device-memory calls of kernels/cuda/memory.h fail loudly (no tensor can
// be placed on a GPU in this build: Tensor::empty refuses first).
#include "kernels/check.h"
#include "kernels/cuda/memory.h"
#include "kernels/device.h"

namespace rotor {

int cuda_device_count() { return 0; }
int cuda_current_device() { return -1; }
bool cuda_select_device(int) { return false; }
std::string cuda_unavailable_reason() { return "rotor was built without CUDA (ROTOR_CUDA=OFF or no nvcc)"; }

namespace cuda {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  ROTOR_CHECK(false) << what << ": rotor was built without CUDA";
  __builtin_unreachable();
}
}  // namespace
void* allocate(int, size_t) { no_cuda("cuda::allocate"); }
void release(int, void*) { no_cuda("cuda::release"); }
MemoryStats memory_stats(int) { no_cuda("cuda::memory_stats"); }
void empty_cache(int) { no_cuda("cuda::empty_cache"); }
void copy_bytes(void*, int, const void*, int, size_t) { no_cuda("cuda::copy_bytes"); }
void copy_2d(void*, size_t, int, const void*, size_t, int, size_t, size_t) { no_cuda("cuda::copy_2d"); }
void zero_bytes(void*, int, size_t) { no_cuda("cuda::zero_bytes"); }
}  // namespace cuda

}  // namespace rotor
