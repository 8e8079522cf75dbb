// Shared device helpers of the launchers in kernels/cuda/*.cu: element
// conversion (f32 arithmetic, bf16 rounded to nearest even at the store),
// 16-byte packs for vectorised loads/stores, warp/block reductions and the
// Float -> element type dispatch. Header-only, C++17 device code.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fault.h"
#include "kernels/cuda/launch.h"

namespace rotor::cuda {

using bf16_t = __nv_bfloat16;

// ---- conversions ------------------------------------------------------------
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16_t x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16_t from_f32<bf16_t>(float x) {
  return __float2bfloat16_rn(x);
}

// ---- 16-byte packs ----------------------------------------------------------
// N consecutive elements; when N * sizeof(T) is a multiple of 16 the pack is
// moved with 16-byte (int4) accesses, so the address must be 16-byte aligned.
template <class T, int N>
struct alignas((N * sizeof(T)) % 16 == 0 ? 16 : alignof(T)) Pack {
  T v[N];
};

template <class T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* src) {
  Pack<T, N> p;
  if constexpr ((N * sizeof(T)) % 16 == 0) {
    constexpr int kWords = static_cast<int>(N * sizeof(T) / 16);
#pragma unroll
    for (int k = 0; k < kWords; ++k)
      reinterpret_cast<int4*>(p.v)[k] = reinterpret_cast<const int4*>(src)[k];
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) p.v[k] = src[k];
  }
  return p;
}

template <class T, int N>
__device__ __forceinline__ void store_pack(T* dst, const Pack<T, N>& p) {
  if constexpr ((N * sizeof(T)) % 16 == 0) {
    constexpr int kWords = static_cast<int>(N * sizeof(T) / 16);
#pragma unroll
    for (int k = 0; k < kWords; ++k)
      reinterpret_cast<int4*>(dst)[k] = reinterpret_cast<const int4*>(p.v)[k];
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) dst[k] = p.v[k];
  }
}

// Elements per 16-byte access.
template <class T>
constexpr int kVec = static_cast<int>(16 / sizeof(T));

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- reductions -------------------------------------------------------------
// max that propagates NaN (fmaxf returns the other operand): a row of NaN
// logits must give NaN, not look like a fully masked row (max -inf, out 0),
// so that the trainer sees the non-finite loss (trainer/train.cc).
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || b != b) ? a + b : fmaxf(a, b); }

// Butterfly sums: every lane ends with the same value, in a fixed order.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = nan_max(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `shared` holds 32 floats. Fixed order: deterministic.
__device__ __forceinline__ float block_sum(float x, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = warp_sum(x);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  x = lane < warps ? shared[lane] : 0.0f;
  return warp_sum(x);
}
__device__ __forceinline__ float block_max(float x, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  x = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(x);
}

// ---- bad inputs (kernels/cuda/fault.h) ------------------------------------------
// Records the device's first fault; later ones (and other threads of the same
// row) find the record claimed and leave it. The host reads `ready` last.
__device__ __forceinline__ void report_fault(FaultRecord* f, int32_t kind, int64_t value, int64_t index,
                                             int64_t bound) {
  if (atomicCAS(&f->claimed, 0, 1) != 0) return;
  f->kind = kind;
  f->value = value;
  f->index = index;
  f->bound = bound;
  __threadfence_system();  // the fields above reach the host before `ready`
  *reinterpret_cast<volatile int32_t*>(&f->ready) = 1;
}

// ---- launch helpers -----------------------------------------------------------
// Blocks for a grid-stride loop over `work` items, at most `cap` blocks.
inline unsigned grid_for(int64_t work, int threads, int64_t cap = 65536) {
  int64_t blocks = (work + threads - 1) / threads;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks);
}

// Calls f(float{}) or f(bf16_t{}) according to t: the lambda's argument type
// is the element type.
template <class F>
void dispatch(Float t, F&& f) {
  if (t == Float::kF32) {
    f(float{});
  } else {
    ROTOR_CHECK(t == Float::kBF16) << "unknown Float " << static_cast<int>(t);
    f(bf16_t{});
  }
}

}  // namespace rotor::cuda
