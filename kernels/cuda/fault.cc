// Device fault records (fault.h): one FaultRecord per device in mapped
// page-locked host memory, never freed (the process's lifetime, like the
// device contexts).
#include "kernels/cuda/fault.h"

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <mutex>

#include "kernels/cuda/cuda_check.h"

namespace rotor::cuda {
namespace {

constexpr int kMaxDevices = 64;

struct Records {
  std::mutex mu;
  std::array<FaultRecord*, kMaxDevices> host{};    // what the host reads
  std::array<FaultRecord*, kMaxDevices> device{};  // the same memory, as kernels address it
};

Records& records() {
  static Records* r = new Records();
  return *r;
}

// Host and device addresses of `device`'s record, created on first use.
std::pair<FaultRecord*, FaultRecord*> record_of(int device) {
  ROTOR_CHECK(device >= 0 && device < kMaxDevices) << "cuda:" << device << " is not a device index";
  Records& r = records();
  std::lock_guard<std::mutex> lock(r.mu);
  const size_t d = static_cast<size_t>(device);
  if (r.host[d] == nullptr) {
    ROTOR_CUDA_CHECK(cudaSetDevice(device));
    void* p = nullptr;
    // Portable: any device may map it; mapped: kernels write it directly.
    ROTOR_CUDA_CHECK(cudaHostAlloc(&p, sizeof(FaultRecord), cudaHostAllocMapped | cudaHostAllocPortable));
    *static_cast<FaultRecord*>(p) = FaultRecord{};
    void* dp = nullptr;
    ROTOR_CUDA_CHECK(cudaHostGetDevicePointer(&dp, p, 0));
    r.host[d] = static_cast<FaultRecord*>(p);
    r.device[d] = static_cast<FaultRecord*>(dp);
  }
  return {r.host[d], r.device[d]};
}

const char* describe(int32_t kind) {
  switch (kind) {
    case kFaultEmbeddingId: return "embedding: token id outside the table [0, V)";
    case kFaultCrossEntropyTarget: return "cross-entropy: target outside the vocabulary";
    default: return "unknown fault";
  }
}

}  // namespace

FaultRecord* fault_record(int device) { return record_of(device).second; }

void check_faults(int device) {
  Records& r = records();
  FaultRecord* rec = nullptr;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    if (device < 0 || device >= kMaxDevices) return;
    rec = r.host[static_cast<size_t>(device)];
  }
  if (rec == nullptr) return;  // no kernel of this device has had a record to write
  // `ready` is written by the device after the other fields (fenced): an
  // acquire load orders the reads below after it.
  if (std::atomic_ref<int32_t>(rec->ready).load(std::memory_order_acquire) == 0) return;
  ROTOR_CHECK(false) << "cuda:" << device << ": " << describe(rec->kind) << ": value " << rec->value
                     << " at position " << rec->index << ", bound " << rec->bound
                     << " (found on the device by the kernel; the output row was left zero / unchanged)";
}

}  // namespace rotor::cuda
