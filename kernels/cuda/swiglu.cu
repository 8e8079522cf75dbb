// CUDA kernels of kernels/swiglu.h: h = silu(gate) * up and its backward.
//
// Parallelisation: grid-stride loop, one thread per 16-byte pack (4 f32 /
// 8 bf16) when every pointer is 16-byte aligned, then a scalar tail; else one
// thread per element. f32 arithmetic in the CPU reference's order
// (sig = 1 / (1 + exp(-g))), bf16 rounded at the store.
#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

// gate, up, h [n]
template <class T, int N>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* h, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t p = first; p < packs; p += stride) {
    const Pack<T, N> g = load_pack<T, N>(gate + p * N);
    const Pack<T, N> u = load_pack<T, N>(up + p * N);
    Pack<T, N> o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float gi = to_f32(g.v[k]);
      o.v[k] = from_f32<T>(gi * sigmoid(gi) * to_f32(u.v[k]));
    }
    store_pack<T, N>(h + p * N, o);
  }
  for (int64_t i = packs * N + first; i < n; i += stride) {
    const float gi = to_f32(gate[i]);
    h[i] = from_f32<T>(gi * sigmoid(gi) * to_f32(up[i]));
  }
}

// One element: dup = dh * silu(g), dgate = dh * up * sig * (1 + g * (1 - sig)).
__device__ __forceinline__ void swiglu_grad(float d, float g, float u, float& dg, float& du) {
  const float sig = sigmoid(g);
  du = d * (g * sig);
  dg = d * u * sig * (1.0f + g * (1.0f - sig));
}

// dh, gate, up, dgate, dup [n]; dgate may alias dh (each element is read
// before it is written, by the same thread).
template <class T, int N>
__global__ void swiglu_backward_kernel(const T* dh, const T* gate, const T* up, T* dgate, T* dup,
                                       int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t p = first; p < packs; p += stride) {
    const Pack<T, N> d = load_pack<T, N>(dh + p * N);
    const Pack<T, N> g = load_pack<T, N>(gate + p * N);
    const Pack<T, N> u = load_pack<T, N>(up + p * N);
    Pack<T, N> dg, du;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float a, b;
      swiglu_grad(to_f32(d.v[k]), to_f32(g.v[k]), to_f32(u.v[k]), a, b);
      dg.v[k] = from_f32<T>(a);
      du.v[k] = from_f32<T>(b);
    }
    store_pack<T, N>(dup + p * N, du);
    store_pack<T, N>(dgate + p * N, dg);
  }
  for (int64_t i = packs * N + first; i < n; i += stride) {
    float a, b;
    swiglu_grad(to_f32(dh[i]), to_f32(gate[i]), to_f32(up[i]), a, b);
    dup[i] = from_f32<T>(b);
    dgate[i] = from_f32<T>(a);
  }
}

}  // namespace

void swiglu_forward(Float t, const void* gate, const void* up, void* h, int64_t n,
                    cudaStream_t stream) {
  if (n == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(gate);
    const T* u = static_cast<const T*>(up);
    T* o = static_cast<T*>(h);
    if (aligned16(gate) && aligned16(up) && aligned16(h)) {
      constexpr int N = kVec<T>;
      swiglu_forward_kernel<T, N><<<grid_for(n / N, kThreads), kThreads, 0, stream>>>(g, u, o, n);
    } else {
      swiglu_forward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(g, u, o, n);
    }
    ROTOR_CUDA_LAUNCHED("swiglu_forward_kernel", stream);
  });
}

void swiglu_backward(Float t, const void* dh, const void* gate, const void* up, void* dgate,
                     void* dup, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    const T* d = static_cast<const T*>(dh);
    const T* g = static_cast<const T*>(gate);
    const T* u = static_cast<const T*>(up);
    T* dg = static_cast<T*>(dgate);
    T* du = static_cast<T*>(dup);
    if (aligned16(dh) && aligned16(gate) && aligned16(up) && aligned16(dgate) && aligned16(dup)) {
      constexpr int N = kVec<T>;
      swiglu_backward_kernel<T, N>
          <<<grid_for(n / N, kThreads), kThreads, 0, stream>>>(d, g, u, dg, du, n);
    } else {
      swiglu_backward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(d, g, u, dg, du, n);
    }
    ROTOR_CUDA_LAUNCHED("swiglu_backward_kernel", stream);
  });
}

}  // namespace rotor::cuda
