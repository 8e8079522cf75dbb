// CUDA kernels of kernels/reduce.h, vocab_slice.h and position_scale.h: the
// small ops that keep a training step's bookkeeping on the device.
//
// sum_into: one block of 256 threads, each summing a strided share in f64,
// then a fixed-order tree; thread 0 adds the total to *acc (no atomics: the
// same bits every run). The sums here are over a micro-batch's tokens.
// embedding_slice_*: one block per token, threads over the D columns; the
// backward adds with atomicAdd (f32 gradients: no bf16 atomics). An id is used
// as an address only after the test 0 <= id - vocab_start < rows, so ids of
// other slices, negative ids and ids past the vocabulary never read or write
// out of bounds (as the CPU op, which has no vocabulary size to check ids
// against: the whole-vocabulary embedding_forward checks ids, fault.h).
// Cross-entropy slice partials/combine and the position scale: one thread
// per token.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/step_launch.h"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void sum_into_kernel(const T* x, int64_t n, double* acc) {
  __shared__ double shared[kThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s += static_cast<double>(to_f32(x[i]));
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (static_cast<int>(threadIdx.x) < w) shared[threadIdx.x] += shared[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *acc += shared[0];
}

__global__ void add_scaled_scalar_kernel(const double* value, double factor, double* acc) { *acc += *value * factor; }

// ids [n], table [rows, d] -> out [n, d]
template <class T>
__global__ void embedding_slice_forward_kernel(const int32_t* ids, const T* table, T* out, int64_t d,
                                               int64_t vocab_start, int64_t rows) {
  const int64_t n = blockIdx.x;
  const int64_t local = static_cast<int64_t>(ids[n]) - vocab_start;
  const bool mine = local >= 0 && local < rows;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) out[n * d + c] = mine ? table[local * d + c] : from_f32<T>(0.f);
}

// dtable[ids[n] - vocab_start, :] += dout[n, :] for ids in the slice
template <class T, class G>
__global__ void embedding_slice_backward_kernel(const int32_t* ids, const T* dout, G* dtable, int64_t d,
                                                int64_t vocab_start, int64_t rows) {
  const int64_t n = blockIdx.x;
  const int64_t local = static_cast<int64_t>(ids[n]) - vocab_start;
  if (local < 0 || local >= rows) return;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    if constexpr (sizeof(G) == sizeof(float)) {
      atomicAdd(dtable + local * d + c, to_f32(dout[n * d + c]));
    } else {
      atomicAdd(dtable + local * d + c, dout[n * d + c]);
    }
  }
}

__global__ void slice_partials_kernel(const float* lse, const float* loss, const int32_t* targets, int64_t n,
                                      int64_t vocab_start, int64_t vocab_rows, const float* max_lse, float* sums) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float m = max_lse[i];
  sums[i] = isfinite(m) ? expf(lse[i] - m) : 0.f;
  const int64_t t = targets[i];
  sums[n + i] = t >= vocab_start && t < vocab_start + vocab_rows ? lse[i] - loss[i] : 0.f;
}

__global__ void slice_combine_kernel(const float* max_lse, const float* sums, const int32_t* targets, int64_t n,
                                     float* lse, float* loss) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float whole = max_lse[i] + logf(sums[i]);
  lse[i] = whole;
  loss[i] = targets[i] < 0 ? 0.f : whole - sums[n + i];
}

template <class T>
__global__ void log_position_scale_kernel(const int32_t* pos, int64_t n, double log_base, double min, T* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const double v = log(static_cast<double>(pos[i]) + 1.0) / log_base;
  out[i] = from_f32<T>(static_cast<float>(v > min ? v : min));
}

template <class T>
__global__ void fill_kernel(T* x, T value, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = value;
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

void sum_into(Float t, const void* x, int64_t n, double* acc, cudaStream_t stream) {
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    sum_into_kernel<T><<<1, kThreads, 0, stream>>>(static_cast<const T*>(x), n, acc);
    ROTOR_CUDA_LAUNCHED("sum_into_kernel", stream);
  });
}

void add_scaled_scalar(const double* value, double factor, double* acc, cudaStream_t stream) {
  add_scaled_scalar_kernel<<<1, 1, 0, stream>>>(value, factor, acc);
  ROTOR_CUDA_LAUNCHED("add_scaled_scalar_kernel", stream);
}

void embedding_slice_forward(Float t, const int32_t* ids, const void* table, void* out, int64_t n, int64_t d,
                             int64_t vocab_start, int64_t rows, cudaStream_t stream) {
  if (n == 0 || d == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    embedding_slice_forward_kernel<T><<<static_cast<unsigned>(n), 128, 0, stream>>>(
        ids, static_cast<const T*>(table), static_cast<T*>(out), d, vocab_start, rows);
    ROTOR_CUDA_LAUNCHED("embedding_slice_forward_kernel", stream);
  });
}

void embedding_slice_backward(Float t, const int32_t* ids, const void* dout, Float dtable_type, void* dtable,
                              int64_t n, int64_t d, int64_t vocab_start, int64_t rows, cudaStream_t stream) {
  if (n == 0 || d == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dout);
    if (dtable_type == Float::kF32) {
      embedding_slice_backward_kernel<T, float><<<static_cast<unsigned>(n), 128, 0, stream>>>(
          ids, g, static_cast<float*>(dtable), d, vocab_start, rows);
    } else {
      embedding_slice_backward_kernel<T, T><<<static_cast<unsigned>(n), 128, 0, stream>>>(
          ids, g, static_cast<T*>(dtable), d, vocab_start, rows);
    }
    ROTOR_CUDA_LAUNCHED("embedding_slice_backward_kernel", stream);
  });
}

void fill(Float t, void* x, double value, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<T*>(x),
                                                                    from_f32<T>(static_cast<float>(value)), n);
    ROTOR_CUDA_LAUNCHED("fill_kernel", stream);
  });
}

void cross_entropy_slice_partials(const float* lse, const float* loss, const int32_t* targets, int64_t n,
                                  int64_t vocab_start, int64_t vocab_rows, const float* max_lse, float* sums,
                                  cudaStream_t stream) {
  if (n == 0) return;
  slice_partials_kernel<<<blocks_for(n), kThreads, 0, stream>>>(lse, loss, targets, n, vocab_start, vocab_rows,
                                                               max_lse, sums);
  ROTOR_CUDA_LAUNCHED("slice_partials_kernel", stream);
}

void cross_entropy_slice_combine(const float* max_lse, const float* sums, const int32_t* targets, int64_t n,
                                 float* lse, float* loss, cudaStream_t stream) {
  if (n == 0) return;
  slice_combine_kernel<<<blocks_for(n), kThreads, 0, stream>>>(max_lse, sums, targets, n, lse, loss);
  ROTOR_CUDA_LAUNCHED("slice_combine_kernel", stream);
}

void log_position_scale(const int32_t* pos, int64_t n, double log_base, double min, Float t, void* out,
                        cudaStream_t stream) {
  if (n == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    log_position_scale_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(pos, n, log_base, min, static_cast<T*>(out));
    ROTOR_CUDA_LAUNCHED("log_position_scale_kernel", stream);
  });
}

}  // namespace rotor::cuda
