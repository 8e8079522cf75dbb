// The sim device: its caching allocator, counted copies and the host-access
// guard (kernels/sim.h).
#include "kernels/sim.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "kernels/tensor.h"

namespace rotor {

SimStats SimStats::since(const SimStats& before) const {
  SimStats d = *this;
  d.host_to_device_calls -= before.host_to_device_calls;
  d.host_to_device_bytes -= before.host_to_device_bytes;
  d.device_to_host_calls -= before.device_to_host_calls;
  d.device_to_host_bytes -= before.device_to_host_bytes;
  d.allocations -= before.allocations;
  return d;
}

namespace sim {
namespace {

// Block sizes as the CUDA allocator rounds them (kernels/cuda/allocator.cc),
// so that the sim counts what a GPU run would: 512 bytes below 1 MiB, 2 MiB
// above. A request takes the smallest cached block that fits and is at most
// twice its size; otherwise it is a new allocation (a "driver" call).
size_t block_size(size_t bytes) {
  const size_t unit = bytes < (size_t{1} << 20) ? 512 : (size_t{2} << 20);
  return (std::max<size_t>(bytes, 1) + unit - 1) / unit * unit;
}

struct SimMemory {
  std::mutex mu;
  std::multimap<size_t, void*> cached;     // size -> free block
  std::unordered_map<void*, size_t> live;  // block -> size
  SimStats stats;
};

// One per process and never destroyed, like a GPU's driver context: tensors
// released during static destruction still find it.
SimMemory& memory() {
  static SimMemory* d = new SimMemory();
  return *d;
}

thread_local int scope_depth = 0;

}  // namespace

void* allocate(size_t bytes) {
  const size_t size = block_size(bytes);
  SimMemory& d = memory();
  std::lock_guard<std::mutex> lock(d.mu);
  void* p = nullptr;
  size_t got = size;
  auto it = d.cached.lower_bound(size);
  if (it != d.cached.end() && it->first <= 2 * size) {
    got = it->first;
    p = it->second;
    d.cached.erase(it);
  } else {
    p = std::aligned_alloc(64, size);
    ROTOR_CHECK(p != nullptr) << "sim: out of host memory allocating " << bytes << " bytes";
    ++d.stats.allocations;
  }
  d.live[p] = got;
  d.stats.allocated_bytes += static_cast<int64_t>(got);
  d.stats.peak_allocated_bytes = std::max(d.stats.peak_allocated_bytes, d.stats.allocated_bytes);
  return p;
}

void release(void* p) {
  SimMemory& d = memory();
  std::lock_guard<std::mutex> lock(d.mu);
  auto it = d.live.find(p);
  ROTOR_CHECK(it != d.live.end()) << "sim: release of a block not allocated here";
  d.cached.emplace(it->second, p);
  d.stats.allocated_bytes -= static_cast<int64_t>(it->second);
  d.live.erase(it);
}

namespace {
void count(bool to_device, size_t bytes) {
  SimMemory& d = memory();
  std::lock_guard<std::mutex> lock(d.mu);
  ++(to_device ? d.stats.host_to_device_calls : d.stats.device_to_host_calls);
  (to_device ? d.stats.host_to_device_bytes : d.stats.device_to_host_bytes) += static_cast<int64_t>(bytes);
}
}  // namespace

void copy_to_device(void* dst, const void* src, size_t bytes) {
  count(true, bytes);
  std::memmove(dst, src, bytes);
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  count(false, bytes);
  std::memmove(dst, src, bytes);
}

void count_read(size_t bytes) { count(false, bytes); }

KernelScope::KernelScope(const Tensor& t) : active_(t.defined() && t.device().is_sim()) {
  if (active_) ++scope_depth;
}

KernelScope::~KernelScope() {
  if (active_) --scope_depth;
}

bool kernel_access() { return scope_depth > 0 || omp_in_parallel(); }

bool in_sim_op() { return scope_depth > 0; }

void check_host_access(const Tensor& t, const char* api, const SourceLocation& where) {
  ROTOR_CHECK(kernel_access()) << "host access to a sim tensor (" << t.str() << ") through " << api << " at "
                               << where.file << ":" << where.line << " in " << where.function
                               << ": device memory is read on the host only through Tensor::to / copy_from "
                                  "(kernels/sim.h); a GPU run would crash here";
}

}  // namespace sim

SimStats sim_stats() {
  sim::SimMemory& d = sim::memory();
  std::lock_guard<std::mutex> lock(d.mu);
  return d.stats;
}

}  // namespace rotor
