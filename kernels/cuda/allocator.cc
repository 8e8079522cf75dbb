// The caching allocator of device memory and the per-device context. See
// memory.h and context.h.
//
// Blocks are rounded up (to 512 bytes below 1 MiB, to 2 MiB above) and, once
// released, kept in a free list by size. A request takes the smallest free
// block that fits and is at most twice its size (a larger one would waste
// more than it saves); otherwise cudaMalloc. When cudaMalloc runs out of
// memory, the cached blocks are returned to the driver and it is tried once
// more; a second failure is a CHECK failure that reports the request and the
// allocator's state.
//
// ROTOR_CUDA_EXACT_ALLOC=1 (read once): no rounding and no cache, every
// request is its own cudaMalloc of exactly its bytes, freed at release (after
// synchronising the device: queued kernels may still use it). Slow; it exists
// so that compute-sanitizer memcheck knows each tensor's true bounds (an
// access past a tensor's end inside a rounded or reused block is otherwise
// invisible to it): tests/gpu/stages/sanitizer.
#include <cuda_runtime_api.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fault.h"
#include "kernels/cuda/memory.h"

namespace rotor::cuda {
namespace {

constexpr size_t kSmall = size_t{1} << 20;  // 1 MiB
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;  // 2 MiB
constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLASLt (Hopper wants >= 32 MiB)
constexpr int kMaxDevices = 64;

size_t rounded(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t r = bytes < kSmall ? kSmallRound : kLargeRound;
  return (bytes + r - 1) / r * r;
}

bool exact_alloc() {
  static const bool on = [] {
    const char* v = std::getenv("ROTOR_CUDA_EXACT_ALLOC");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device), exact_(exact_alloc()) {}

  void* allocate(size_t bytes) {
    const size_t size = exact_ ? (bytes == 0 ? 1 : bytes) : rounded(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(size);
    void* p = nullptr;
    size_t got = size;
    if (it != free_.end() && it->first <= 2 * size) {
      p = it->second;
      got = it->first;
      free_.erase(it);
      stats_.cached_bytes -= static_cast<int64_t>(got);
    } else {
      ROTOR_CUDA_CHECK(cudaSetDevice(device_));
      cudaError_t err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        release_cached_locked();
        err = cudaMalloc(&p, size);
      }
      ROTOR_CHECK(err == cudaSuccess)
          << "cuda:" << device_ << ": cannot allocate " << bytes << " bytes (" << cudaGetErrorString(err)
          << "); rotor holds " << stats_.allocated_bytes << " bytes in tensors, peak "
          << stats_.peak_allocated_bytes << ", after returning its cached blocks";
      ++stats_.device_allocations;
    }
    used_[p] = got;
    stats_.allocated_bytes += static_cast<int64_t>(got);
    if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = used_.find(p);
    ROTOR_CHECK(it != used_.end()) << "cuda:" << device_ << ": release of a block not allocated here";
    if (exact_) {
      ROTOR_CUDA_CHECK(cudaSetDevice(device_));
      ROTOR_CUDA_CHECK(cudaDeviceSynchronize());
      ROTOR_CUDA_CHECK(cudaFree(p));
      stats_.allocated_bytes -= static_cast<int64_t>(it->second);
      used_.erase(it);
      return;
    }
    free_.emplace(it->second, p);
    stats_.allocated_bytes -= static_cast<int64_t>(it->second);
    stats_.cached_bytes += static_cast<int64_t>(it->second);
    used_.erase(it);
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

 private:
  void release_cached_locked() {
    // Work queued on the stream may still read blocks freed by the host.
    ROTOR_CUDA_CHECK(cudaDeviceSynchronize());
    for (const auto& [size, p] : free_) ROTOR_CUDA_CHECK(cudaFree(p));
    free_.clear();
    stats_.cached_bytes = 0;
  }

  int device_;
  bool exact_;  // ROTOR_CUDA_EXACT_ALLOC (top of the file)
  std::mutex mu_;
  std::multimap<size_t, void*> free_;       // size -> block
  std::unordered_map<void*, size_t> used_;  // block -> size
  MemoryStats stats_;
};

struct Backend {
  std::mutex mu;
  std::array<std::unique_ptr<CachingAllocator>, kMaxDevices> allocators;
  std::array<std::unique_ptr<DeviceContext>, kMaxDevices> contexts;
};

// Process-wide, like the driver's contexts it wraps (never destroyed: the
// driver tears everything down at exit, and tensors freed during static
// destruction still find their allocator).
Backend& backend() {
  static Backend* b = new Backend();
  return *b;
}

CachingAllocator& allocator(int device) {
  ROTOR_CHECK(device >= 0 && device < kMaxDevices) << "cuda:" << device << " is not a device index";
  Backend& b = backend();
  std::lock_guard<std::mutex> lock(b.mu);
  auto& a = b.allocators[static_cast<size_t>(device)];
  if (!a) a = std::make_unique<CachingAllocator>(device);
  return *a;
}

}  // namespace

DeviceContext& device_context(int device) {
  ROTOR_CHECK(device >= 0 && device < kMaxDevices) << "cuda:" << device << " is not a device index";
  ROTOR_CUDA_CHECK(cudaSetDevice(device));
  Backend& b = backend();
  {
    std::lock_guard<std::mutex> lock(b.mu);
    auto& c = b.contexts[static_cast<size_t>(device)];
    if (c) return *c;
  }
  auto c = std::make_unique<DeviceContext>();
  c->device = device;
  ROTOR_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  ROTOR_CUBLAS_CHECK(cublasLtCreate(&c->lt));
  c->workspace_bytes = kWorkspaceBytes;
  c->workspace = allocate(device, kWorkspaceBytes);
  std::lock_guard<std::mutex> lock(b.mu);
  auto& slot = b.contexts[static_cast<size_t>(device)];
  if (!slot) slot = std::move(c);  // another thread may have won; its context stays
  return *slot;
}

void synchronize(int device) {
  ROTOR_CUDA_CHECK(cudaStreamSynchronize(device_context(device).stream));
  check_faults(device);  // every kernel of the device has run: its faults are visible (fault.h)
}

void* allocate(int device, size_t bytes) { return allocator(device).allocate(bytes); }
void release(int device, void* p) { allocator(device).release(p); }
MemoryStats memory_stats(int device) { return allocator(device).stats(); }
void empty_cache(int device) { allocator(device).empty_cache(); }

namespace {

// `waiter` waits (on the GPU) for everything queued on `on` so far.
void stream_waits(cudaStream_t waiter, int on_device, cudaStream_t on) {
  ROTOR_CUDA_CHECK(cudaSetDevice(on_device));
  cudaEvent_t e = nullptr;
  ROTOR_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  ROTOR_CUDA_CHECK(cudaEventRecord(e, on));
  ROTOR_CUDA_CHECK(cudaStreamWaitEvent(waiter, e, 0));
  ROTOR_CUDA_CHECK(cudaEventDestroy(e));  // released once it has completed
}

// A copy between memories of which at least one is a device's. It runs on
// the compute stream of the destination device (of the source for a copy to
// the host). Between two different GPUs that alone was wrong: the copy was
// ordered after the destination's queued work only, so it could read the
// source before the source device's kernels had written it, and the source
// device could reuse or overwrite the block (caching allocator, memory.h)
// while the copy still read it. So the copy stream first waits for the
// source's stream, and the source's stream then waits for the copy.
// `enqueue` queues the copy on the stream it is given. Returns after the copy
// when either side is the host (and checks the device's fault records then,
// since the stream is synchronised anyway: fault.h).
template <class Enqueue>
void ordered_copy(int dst_device, int src_device, Enqueue&& enqueue) {
  const int device = dst_device >= 0 ? dst_device : src_device;
  ROTOR_CHECK(device >= 0) << "copy: host to host is not a device copy";
  const bool cross = dst_device >= 0 && src_device >= 0 && dst_device != src_device;
  cudaStream_t src_stream = cross ? device_context(src_device).stream : nullptr;
  cudaStream_t stream = device_context(device).stream;  // current device: `device`
  if (cross) {
    stream_waits(stream, src_device, src_stream);
    ROTOR_CUDA_CHECK(cudaSetDevice(device));
  }
  enqueue(stream);
  if (cross) {
    stream_waits(src_stream, device, stream);
    ROTOR_CUDA_CHECK(cudaSetDevice(device));
  }
  if (dst_device < 0 || src_device < 0) {
    ROTOR_CUDA_CHECK(cudaStreamSynchronize(stream));
    check_faults(device);
  }
}

}  // namespace

void copy_bytes(void* dst, int dst_device, const void* src, int src_device, size_t bytes) {
  if (bytes == 0) return;
  ordered_copy(dst_device, src_device, [&](cudaStream_t stream) {
    ROTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  });
}

void copy_2d(void* dst, size_t dst_pitch, int dst_device, const void* src, size_t src_pitch,
             int src_device, size_t width, size_t rows) {
  if (width == 0 || rows == 0) return;
  ordered_copy(dst_device, src_device, [&](cudaStream_t stream) {
    ROTOR_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDefault, stream));
  });
}

void zero_bytes(void* p, int device, size_t bytes) {
  if (bytes == 0) return;
  ROTOR_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, device_context(device).stream));
}

}  // namespace rotor::cuda
