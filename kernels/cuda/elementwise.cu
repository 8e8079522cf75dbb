// CUDA kernels of kernels/elementwise.h: add, axpy, scale, squared_norm, cast.
//
// Parallelisation: add/axpy/scale/cast are grid-stride loops, one thread per
// 16-byte pack (4 f32 or 8 bf16) when every pointer is 16-byte aligned, then a
// scalar tail; otherwise one thread per element. Arithmetic in f32, bf16
// rounded to nearest even at the store; axpy rounds the product and the sum
// separately (no FMA), as the CPU reference does.
// squared_norm: pass 1 gives one f64 partial per block (each thread sums its
// grid-stride elements in f64, then a fixed-order tree in shared memory);
// pass 2, one block, sums the partials in a fixed order. The grid size depends
// only on n, so the result has the same bits every run.
#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 256;

// ---- add: out = a + b ---------------------------------------------------------
// a, b, out [n]; N elements per thread step (N = 1: scalar).
template <class T, int N>
__global__ void add_kernel(const T* a, const T* b, T* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t p = first; p < packs; p += stride) {
    const Pack<T, N> x = load_pack<T, N>(a + p * N);
    const Pack<T, N> y = load_pack<T, N>(b + p * N);
    Pack<T, N> z;
#pragma unroll
    for (int k = 0; k < N; ++k) z.v[k] = from_f32<T>(to_f32(x.v[k]) + to_f32(y.v[k]));
    store_pack<T, N>(out + p * N, z);
  }
  for (int64_t i = packs * N + first; i < n; i += stride)
    out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

// ---- axpy: y += alpha * x -------------------------------------------------------
template <class T, int N>
__global__ void axpy_kernel(float alpha, const T* x, T* y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t p = first; p < packs; p += stride) {
    const Pack<T, N> xv = load_pack<T, N>(x + p * N);
    Pack<T, N> yv = load_pack<T, N>(y + p * N);
#pragma unroll
    for (int k = 0; k < N; ++k)
      yv.v[k] = from_f32<T>(__fadd_rn(to_f32(yv.v[k]), __fmul_rn(alpha, to_f32(xv.v[k]))));
    store_pack<T, N>(y + p * N, yv);
  }
  for (int64_t i = packs * N + first; i < n; i += stride)
    y[i] = from_f32<T>(__fadd_rn(to_f32(y[i]), __fmul_rn(alpha, to_f32(x[i]))));
}

// ---- scale: x *= alpha ----------------------------------------------------------
template <class T, int N>
__global__ void scale_kernel(T* x, float alpha, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t p = first; p < packs; p += stride) {
    Pack<T, N> v = load_pack<T, N>(x + p * N);
#pragma unroll
    for (int k = 0; k < N; ++k) v.v[k] = from_f32<T>(to_f32(v.v[k]) * alpha);
    store_pack<T, N>(x + p * N, v);
  }
  for (int64_t i = packs * N + first; i < n; i += stride) x[i] = from_f32<T>(to_f32(x[i]) * alpha);
}

// ---- squared_norm ---------------------------------------------------------------
constexpr int kNormThreads = 256;
constexpr int64_t kNormMaxBlocks = 1024;

int64_t norm_blocks(int64_t n) {
  return static_cast<int64_t>(grid_for(n, kNormThreads * 4, kNormMaxBlocks));
}

// Fixed-order tree sum of kNormThreads doubles in shared memory; thread 0 gets it.
__device__ double block_sum_f64(double s, double* shared) {
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int w = kNormThreads / 2; w > 0; w >>= 1) {
    if (static_cast<int>(threadIdx.x) < w) shared[threadIdx.x] += shared[threadIdx.x + w];
    __syncthreads();
  }
  return shared[0];
}

// x [n] -> partial [gridDim.x] (f64).
template <class T>
__global__ void squared_norm_partial_kernel(const T* x, int64_t n, double* partial) {
  __shared__ double shared[kNormThreads];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  double s = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const double v = static_cast<double>(to_f32(x[i]));
    s += v * v;
  }
  const double total = block_sum_f64(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// partial [count] -> *result; one block.
__global__ void squared_norm_final_kernel(const double* partial, int64_t count, double* result) {
  __shared__ double shared[kNormThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  const double total = block_sum_f64(s, shared);
  if (threadIdx.x == 0) *result = total;
}

// ---- cast -----------------------------------------------------------------------
// 8 elements per step: one 16-byte bf16 access, two f32 ones.
template <class S, class D, int N>
__global__ void cast_kernel(const S* src, D* dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t p = first; p < packs; p += stride) {
    const Pack<S, N> a = load_pack<S, N>(src + p * N);
    Pack<D, N> b;
#pragma unroll
    for (int k = 0; k < N; ++k) b.v[k] = from_f32<D>(to_f32(a.v[k]));
    store_pack<D, N>(dst + p * N, b);
  }
  for (int64_t i = packs * N + first; i < n; i += stride) dst[i] = from_f32<D>(to_f32(src[i]));
}

template <class S, class D>
void cast_typed(const void* src, void* dst, int64_t n, cudaStream_t stream) {
  const S* s = static_cast<const S*>(src);
  D* d = static_cast<D*>(dst);
  if (aligned16(src) && aligned16(dst)) {
    cast_kernel<S, D, 8><<<grid_for(n / 8, kThreads), kThreads, 0, stream>>>(s, d, n);
  } else {
    cast_kernel<S, D, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(s, d, n);
  }
  ROTOR_CUDA_LAUNCHED("cast_kernel", stream);
}

}  // namespace

void add(Float t, const void* a, const void* b, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a);
    const T* y = static_cast<const T*>(b);
    T* z = static_cast<T*>(out);
    if (aligned16(a) && aligned16(b) && aligned16(out)) {
      constexpr int N = kVec<T>;
      add_kernel<T, N><<<grid_for(n / N, kThreads), kThreads, 0, stream>>>(x, y, z, n);
    } else {
      add_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, z, n);
    }
    ROTOR_CUDA_LAUNCHED("add_kernel", stream);
  });
}

void axpy(Float t, double alpha, const void* x, void* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const float a = static_cast<float>(alpha);  // the CPU reference's T(alpha)
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
    if (aligned16(x) && aligned16(y)) {
      constexpr int N = kVec<T>;
      axpy_kernel<T, N><<<grid_for(n / N, kThreads), kThreads, 0, stream>>>(a, xp, yp, n);
    } else {
      axpy_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(a, xp, yp, n);
    }
    ROTOR_CUDA_LAUNCHED("axpy_kernel", stream);
  });
}

void scale(Float t, void* x, double alpha, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const float a = static_cast<float>(alpha);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    T* xp = static_cast<T*>(x);
    if (aligned16(x)) {
      constexpr int N = kVec<T>;
      scale_kernel<T, N><<<grid_for(n / N, kThreads), kThreads, 0, stream>>>(xp, a, n);
    } else {
      scale_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(xp, a, n);
    }
    ROTOR_CUDA_LAUNCHED("scale_kernel", stream);
  });
}

size_t squared_norm_scratch_bytes(int64_t n) {
  return static_cast<size_t>(norm_blocks(n)) * sizeof(double);
}

void squared_norm(Float t, const void* x, int64_t n, double* result, void* scratch,
                  cudaStream_t stream) {
  double* partial = static_cast<double*>(scratch);
  const int64_t blocks = norm_blocks(n);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    squared_norm_partial_kernel<T><<<static_cast<unsigned>(blocks), kNormThreads, 0, stream>>>(
        static_cast<const T*>(x), n, partial);
    ROTOR_CUDA_LAUNCHED("squared_norm_partial_kernel", stream);
  });
  squared_norm_final_kernel<<<1, kNormThreads, 0, stream>>>(partial, blocks, result);
  ROTOR_CUDA_LAUNCHED("squared_norm_final_kernel", stream);
}

void cast(Float src_t, const void* src, Float dst_t, void* dst, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (src_t == dst_t) {
    const size_t elem = src_t == Float::kF32 ? sizeof(float) : sizeof(bf16_t);
    ROTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * elem,
                                     cudaMemcpyDeviceToDevice, stream));
    return;
  }
  if (src_t == Float::kF32) {
    cast_typed<float, bf16_t>(src, dst, n, stream);
  } else {
    cast_typed<bf16_t, float>(src, dst, n, stream);
  }
}

}  // namespace rotor::cuda
