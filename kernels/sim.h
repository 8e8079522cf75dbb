// The checked stand-in device `sim`: a test device (as PyTorch's meta device
// is one) whose memory is host memory but which is treated as device memory,
// so that the device-generic code paths run and are checked on a machine
// without a GPU.
//
// - Ops on sim tensors run the CPU kernels (kernels/cpu), inside a
//   KernelScope that the op's first statement opens (ROTOR_ON_DEVICE in
//   kernels/cuda/ops.h).
// - Every other host access through the Tensor API (data(), raw(), item(),
//   to_vector()) to a sim tensor aborts with the caller's file and line:
//   exactly where a GPU pointer would crash. Host code reaches sim memory only
//   through the copy API (Tensor::to, Tensor::copy_from), or hands
//   Tensor::device_ptr() to a library that takes device pointers (a
//   communicator, as NCCL and CUDA-aware MPI take GPU pointers).
// - Copies between host and sim are counted (calls and bytes, each way), and
//   so are allocations: sim memory comes from a caching allocator like the
//   CUDA one (kernels/cuda/memory.h), and `allocations` counts its misses, the
//   calls that would reach the driver. A training step that allocates nothing
//   in steady state shows 0 new allocations after its first step.
//
// The counters are per process, like the CUDA allocator's statistics; tests
// read them before and after the code they measure (SimStats::since).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/check.h"

namespace rotor {

class Tensor;

struct SimStats {
  int64_t host_to_device_calls = 0;
  int64_t host_to_device_bytes = 0;
  int64_t device_to_host_calls = 0;
  int64_t device_to_host_bytes = 0;
  int64_t allocations = 0;          // cache misses of the sim caching allocator
  int64_t allocated_bytes = 0;      // held by live sim tensors (rounded)
  int64_t peak_allocated_bytes = 0;
  // The counts from `before` to this (the byte gauges are kept as they are).
  SimStats since(const SimStats& before) const;
};

SimStats sim_stats();

namespace sim {

void* allocate(size_t bytes);
void release(void* p);
// Counted copies between host memory and sim memory.
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
// Counts a device -> host read of `bytes` that is not a copy: an op that
// returns its result to the host (squared_norm), as its CUDA version must.
void count_read(size_t bytes);

// Host access to sim memory is allowed on this thread while a KernelScope of
// a sim tensor is open (nested scopes count), and in OpenMP worker threads of
// a parallel region (the CPU kernels' loops; only kernels open them).
class KernelScope {
 public:
  explicit KernelScope(const Tensor& t);
  ~KernelScope();
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;

 private:
  bool active_;
};

bool kernel_access();
// True while this thread runs a sim op (a KernelScope is open).
bool in_sim_op();
// Aborts, naming `where` and the tensor, unless kernel_access().
void check_host_access(const Tensor& t, const char* api, const SourceLocation& where);

}  // namespace sim
}  // namespace rotor
