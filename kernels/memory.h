// Tagged accounting of tensor memory: every tensor rotor allocates is counted
// under a tag saying what it is for, per device, with the high-water mark of
// the device's total and the breakdown by tag at that moment.
//
//   parameters   weights (f32 masters and the bf16 working copy)
//   gradients    parameter gradients and the data-parallel reduction buckets
//   optimizer    AdamW moments (whole, or the ZeRO-1 shards)
//   activations  what forward keeps for backward (model/llama_block.h:
//                Recompute): block inputs, kept attention outputs and LSEs,
//                the final norm's input and output
//   offloaded    activations moved to host memory (train.offload_activations);
//                never part of a device's total, even when the "device" is
//                the CPU: they stand for the pinned host pool
//   transient    everything else: an op's scratch, a block's intermediates,
//                gradients of activations, communication buffers
//
// An allocation takes the tag of the innermost MemoryTagScope open on the
// calling thread (transient when none is), and keeps it until it is freed or
// retagged (set_memory_tag: forward marks what it keeps as activations once
// the block is done). The counters are per process and per device, like the
// CUDA allocator's statistics: `rotor train` reads them after its first step,
// tests before and after the code they measure, and the memory model
// (trainer/memory_plan.h) predicts them.
//
// Bytes are the tensors' own (numel * dtype size), before any allocator
// rounding or caching: what the program asks for, which is what a model of
// the program can predict. Memory that kernels take outside Tensor (the CPU
// attention's per-thread score rows, BLAS buffers) is not counted.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "kernels/tensor.h"

namespace rotor {

enum class MemoryTag : uint8_t { kTransient, kParameters, kGradients, kOptimizer, kActivations, kOffloaded };
inline constexpr int kMemoryTags = 6;
const char* memory_tag_name(MemoryTag tag);  // "transient", "parameters", ...

struct MemoryUsage {
  std::array<int64_t, kMemoryTags> current{};  // live bytes by tag
  std::array<int64_t, kMemoryTags> at_peak{};  // by tag when the device total peaked
  std::array<int64_t, kMemoryTags> high{};     // high-water mark of each tag alone
  int64_t peak = 0;                            // high-water mark of device_total()

  int64_t operator[](MemoryTag t) const { return current[static_cast<int>(t)]; }
  int64_t peak_of(MemoryTag t) const { return at_peak[static_cast<int>(t)]; }
  int64_t high_of(MemoryTag t) const { return high[static_cast<int>(t)]; }
  // Live bytes on the device: every tag but offloaded.
  int64_t device_total() const;
  // "peak 297.1 MB: parameters 5.2 MB, gradients 5.2 MB, ..." (at the peak).
  std::string peak_summary() const;
};

// The counters of `device` (all cuda devices apart, by index).
MemoryUsage memory_usage(Device device);
// Starts a new high-water mark at the current total (e.g. before a step).
void reset_memory_peak(Device device);

// Allocations on this thread take `tag` while the scope is open (nested
// scopes: the innermost).
class MemoryTagScope {
 public:
  explicit MemoryTagScope(MemoryTag tag);
  ~MemoryTagScope();
  MemoryTagScope(const MemoryTagScope&) = delete;
  MemoryTagScope& operator=(const MemoryTagScope&) = delete;

 private:
  MemoryTag previous_;
};

MemoryTag current_memory_tag();

// Moves the storage of `t` (all of it, whatever view `t` is) to `tag`. A
// no-op for an undefined tensor or one that wraps memory rotor did not
// allocate.
void set_memory_tag(const Tensor& t, MemoryTag tag);
MemoryTag memory_tag(const Tensor& t);

namespace memory_internal {
// Called by Tensor::empty and ~Storage: returns the ledger index for Storage.
int8_t account_allocation(Device device, int64_t bytes, MemoryTag tag);
void account_release(int8_t ledger, int64_t bytes, MemoryTag tag);
}  // namespace memory_internal

}  // namespace rotor
