// CUDA kernels of kernels/rmsnorm.h.
//
// forward: one warp per row (256-thread blocks, 8 rows per block); lanes
// stride over the row in 16-byte packs (4 f32 / 8 bf16) when D is a multiple of
// the pack and x, w, y are 16-byte aligned, else element by element. Sum of
// squares in f32, butterfly-reduced over the warp.
// backward: a fixed grid of G = min(256, ceil(N / 16)) blocks of 256 threads;
// block g takes rows g, g + G, ...; per row the block reduces
// dot = sum_j w_j dy_j x_j (f32, fixed order), writes dx, and each thread adds
// dy_j x_j rstd into its own columns of an f32 accumulator [D] in shared memory.
// The block then stores that accumulator as its partial (f32 [G, D] in
// scratch), and a second kernel (one thread per column) sums the G partials
// in block order into dw (+=). No atomics: deterministic for a given N, D.
// All arithmetic f32; x, w, y, dy, dx are f32 or bf16 (rounded at the
// store); rstd and dw are f32 whatever the activations are.
#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kFwdThreads = 256;  // 8 warps, one row each
constexpr int kBwdThreads = 256;
constexpr int64_t kBwdMaxBlocks = 256;
constexpr int64_t kBwdRowsPerBlock = 16;  // at least, before the cap

int64_t backward_blocks(int64_t n) {
  int64_t g = (n + kBwdRowsPerBlock - 1) / kBwdRowsPerBlock;
  if (g > kBwdMaxBlocks) g = kBwdMaxBlocks;
  return g < 1 ? 1 : g;
}

// x, y [n, d]; w [d]; rstd [n]. N elements per access.
template <class T, int N>
__global__ void rmsnorm_forward_kernel(const T* x, const T* w, float eps, T* y, float* rstd,
                                       int64_t n, int64_t d) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n) return;
  const T* xr = x + row * d;
  T* yr = y + row * d;
  float ss = 0.0f;
  for (int64_t c = static_cast<int64_t>(lane) * N; c < d; c += 32 * N) {
    const Pack<T, N> xv = load_pack<T, N>(xr + c);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float xi = to_f32(xv.v[k]);
      ss += xi * xi;
    }
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  if (lane == 0) rstd[row] = r;
  for (int64_t c = static_cast<int64_t>(lane) * N; c < d; c += 32 * N) {
    const Pack<T, N> xv = load_pack<T, N>(xr + c);
    const Pack<T, N> wv = load_pack<T, N>(w + c);
    Pack<T, N> yv;
#pragma unroll
    for (int k = 0; k < N; ++k) yv.v[k] = from_f32<T>(to_f32(xv.v[k]) * r * to_f32(wv.v[k]));
    store_pack<T, N>(yr + c, yv);
  }
}

// dy, x, dx [n, d]; w [d]; rstd [n]; partial [gridDim.x, d] f32.
// Dynamic shared memory: d floats (this block's dw accumulator).
template <class T, int N>
__global__ void rmsnorm_backward_kernel(const T* dy, const T* x, const T* w, const float* rstd,
                                        T* dx, float* partial, int64_t n, int64_t d) {
  extern __shared__ float dw_acc[];  // [d]
  __shared__ float red[32];
  const int64_t step = static_cast<int64_t>(blockDim.x) * N;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * N; c < d; c += step)
    for (int k = 0; k < N; ++k) dw_acc[c + k] = 0.0f;
  // Each thread only ever touches its own columns of dw_acc: no sync needed.
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const T* gr = dy + row * d;
    const T* xr = x + row * d;
    T* dxr = dx + row * d;
    const float r = rstd[row];
    float dot = 0.0f;  // sum_j (w_j dy_j) x_j
    for (int64_t c = static_cast<int64_t>(threadIdx.x) * N; c < d; c += step) {
      const Pack<T, N> gv = load_pack<T, N>(gr + c);
      const Pack<T, N> xv = load_pack<T, N>(xr + c);
      const Pack<T, N> wv = load_pack<T, N>(w + c);
#pragma unroll
      for (int k = 0; k < N; ++k) dot += to_f32(wv.v[k]) * to_f32(gv.v[k]) * to_f32(xv.v[k]);
    }
    dot = block_sum(dot, red);
    const float cr = r * r * dot / static_cast<float>(d);
    for (int64_t c = static_cast<int64_t>(threadIdx.x) * N; c < d; c += step) {
      const Pack<T, N> gv = load_pack<T, N>(gr + c);
      const Pack<T, N> xv = load_pack<T, N>(xr + c);
      const Pack<T, N> wv = load_pack<T, N>(w + c);
      Pack<T, N> dxv;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float g = to_f32(gv.v[k]), xi = to_f32(xv.v[k]);
        dxv.v[k] = from_f32<T>(r * (to_f32(wv.v[k]) * g - xi * cr));
        dw_acc[c + k] += g * xi * r;
      }
      store_pack<T, N>(dxr + c, dxv);
    }
  }
  float* mine = partial + static_cast<int64_t>(blockIdx.x) * d;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * N; c < d; c += step)
    for (int k = 0; k < N; ++k) mine[c + k] = dw_acc[c + k];
}

// dw[j] += sum_g partial[g, j], g in order. One thread per column; dw f32.
__global__ void rmsnorm_dw_reduce_kernel(const float* partial, int64_t blocks, float* dw, int64_t d) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  float s = 0.0f;
  for (int64_t g = 0; g < blocks; ++g) s += partial[g * d + j];
  dw[j] += s;
}

template <class K>
void allow_shared(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    ROTOR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
  }
}

}  // namespace

void rmsnorm_forward(Float t, const void* x, const void* w, double eps, void* y, float* rstd,
                     int64_t n, int64_t d, cudaStream_t stream) {
  if (n == 0) return;
  const float e = static_cast<float>(eps);  // the CPU reference's T(eps)
  const unsigned blocks = static_cast<unsigned>((n + kFwdThreads / 32 - 1) / (kFwdThreads / 32));
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec<T>;
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    T* yp = static_cast<T*>(y);
    if (d % V == 0 && aligned16(x) && aligned16(w) && aligned16(y)) {
      rmsnorm_forward_kernel<T, V><<<blocks, kFwdThreads, 0, stream>>>(xp, wp, e, yp, rstd, n, d);
    } else {
      rmsnorm_forward_kernel<T, 1><<<blocks, kFwdThreads, 0, stream>>>(xp, wp, e, yp, rstd, n, d);
    }
    ROTOR_CUDA_LAUNCHED("rmsnorm_forward_kernel", stream);
  });
}

size_t rmsnorm_backward_scratch_bytes(int64_t n, int64_t d) {
  return static_cast<size_t>(backward_blocks(n)) * static_cast<size_t>(d) * sizeof(float);
}

void rmsnorm_backward(Float t, const void* dy, const void* x, const void* w, const float* rstd,
                      void* dx, float* dw, int64_t n, int64_t d, void* scratch,
                      cudaStream_t stream) {
  if (d == 0) return;
  float* partial = static_cast<float*>(scratch);
  const int64_t blocks = backward_blocks(n);
  const size_t shared = static_cast<size_t>(d) * sizeof(float);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec<T>;
    const T* gp = static_cast<const T*>(dy);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const float* rp = rstd;
    T* dxp = static_cast<T*>(dx);
    if (d % V == 0 && aligned16(dy) && aligned16(x) && aligned16(w) && aligned16(dx)) {
      allow_shared(rmsnorm_backward_kernel<T, V>, shared);
      rmsnorm_backward_kernel<T, V><<<static_cast<unsigned>(blocks), kBwdThreads, shared, stream>>>(
          gp, xp, wp, rp, dxp, partial, n, d);
    } else {
      allow_shared(rmsnorm_backward_kernel<T, 1>, shared);
      rmsnorm_backward_kernel<T, 1><<<static_cast<unsigned>(blocks), kBwdThreads, shared, stream>>>(
          gp, xp, wp, rp, dxp, partial, n, d);
    }
    ROTOR_CUDA_LAUNCHED("rmsnorm_backward_kernel", stream);
    rmsnorm_dw_reduce_kernel<<<grid_for(d, 256, INT32_MAX), 256, 0, stream>>>(partial, blocks, dw, d);
    ROTOR_CUDA_LAUNCHED("rmsnorm_dw_reduce_kernel", stream);
  });
}

}  // namespace rotor::cuda
