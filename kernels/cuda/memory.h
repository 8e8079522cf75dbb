// Device memory for Tensor (kernels/tensor.cc), declared without CUDA types
// so that the CPU-only build links too (kernels/cuda/no_cuda.cc answers every
// call with a CHECK failure: no tensor can be on a GPU there).
//
// Memory comes from one caching allocator per device (allocator.cc): freed
// blocks stay with the process and are handed out again, so a training step
// after the first allocates nothing from the driver (cudaMalloc synchronises
// the device and costs ~100 us). All work on a device runs on its one compute
// stream (kernels/cuda/context.h), so a block freed by the host may be reused
// by later work on that stream without an event: stream order keeps the old
// readers before the new writers. Code that uses another stream (NCCL, copy
// streams) must keep the tensor alive until that stream has passed it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rotor::cuda {

struct MemoryStats {
  int64_t allocated_bytes = 0;       // held by live tensors (rounded block sizes)
  int64_t cached_bytes = 0;          // free blocks kept for reuse
  int64_t peak_allocated_bytes = 0;  // high-water mark of allocated_bytes
  int64_t device_allocations = 0;    // cudaMalloc calls so far
};

void* allocate(int device, size_t bytes);
void release(int device, void* p);
MemoryStats memory_stats(int device);
// Returns the cached free blocks of `device` to the driver.
void empty_cache(int device);

// Copies `bytes`; a side with device < 0 is host memory. Returns after the
// copy is done when either side is on the host (so host data can be read or
// freed), else queues it on the destination device's compute stream. The copy
// is ordered after the work queued on the compute stream of the source device
// too, and between two GPUs later work of the source's stream waits for it
// (allocator.cc: ordered_copy).
void copy_bytes(void* dst, int dst_device, const void* src, int src_device, size_t bytes);
// 2-D copy: `rows` rows of `width` bytes, rows `dst_pitch` / `src_pitch`
// bytes apart (cudaMemcpy2DAsync); devices and completion as copy_bytes.
void copy_2d(void* dst, size_t dst_pitch, int dst_device, const void* src, size_t src_pitch,
             int src_device, size_t width, size_t rows);
// Zeroes `bytes` at `p` on `device` (queued on the compute stream).
void zero_bytes(void* p, int device, size_t bytes);

}  // namespace rotor::cuda
