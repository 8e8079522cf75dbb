// CUDA kernels of kernels/rope_apply.h: rotary embedding (rotate-half pairs
// (i, i + D/2)) with the per-token multiplier fused in.
//
// Parallelisation: one block (128 threads) per token row r = (b, t). The block
// first computes c_i = af cos(a_i) m and s_i = af sin(a_i) m dir for the D/2
// angles a_i = pos[r] * inv_freq[i] (f32, as the CPU reference) into shared
// memory, then the threads stride over (head, group of N pairs): N consecutive
// first halves and the N matching second halves as 16-byte packs when D/2 is a
// multiple of the pack (4 f32 / 8 bf16) and x, y are 16-byte aligned, else one
// pair per step. f32 arithmetic with every product and sum rounded separately
// (no FMA), in the CPU reference's order; bf16 rounded at the store. Each
// element is read and written by the same thread, so y may alias x.
#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 128;

// x, y [rows, heads, d]; pos [rows]; inv_freq [d/2]; scale [rows] or null.
// Dynamic shared memory: 2 * (d/2) floats.
template <class T, int N>
__global__ void rope_kernel(const T* x, const int32_t* pos, const float* inv_freq, float af,
                            const T* scale, T* y, int64_t heads, int64_t d, float direction) {
  extern __shared__ float cs[];  // c [half], s [half]
  const int64_t half = d / 2;
  const int64_t r = blockIdx.x;
  float* c = cs;
  float* s = cs + half;
  const float m = scale != nullptr ? to_f32(scale[r]) : 1.0f;
  const float p = static_cast<float>(pos[r]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float a = __fmul_rn(p, inv_freq[i]);
    c[i] = __fmul_rn(__fmul_rn(af, cosf(a)), m);
    s[i] = __fmul_rn(__fmul_rn(__fmul_rn(af, sinf(a)), m), direction);
  }
  __syncthreads();
  const int64_t groups = half / N;  // pair groups per head
  for (int64_t u = threadIdx.x; u < heads * groups; u += blockDim.x) {
    const int64_t h = u / groups, i0 = (u % groups) * N;
    const int64_t o = (r * heads + h) * d + i0;
    const Pack<T, N> x1 = load_pack<T, N>(x + o);
    const Pack<T, N> x2 = load_pack<T, N>(x + o + half);
    Pack<T, N> y1, y2;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float a1 = to_f32(x1.v[k]), a2 = to_f32(x2.v[k]);
      const float ci = c[i0 + k], si = s[i0 + k];
      y1.v[k] = from_f32<T>(__fsub_rn(__fmul_rn(a1, ci), __fmul_rn(a2, si)));
      y2.v[k] = from_f32<T>(__fadd_rn(__fmul_rn(a2, ci), __fmul_rn(a1, si)));
    }
    store_pack<T, N>(y + o, y1);
    store_pack<T, N>(y + o + half, y2);
  }
}

void rope_launch(Float t, const void* x, const int32_t* pos, const float* inv_freq,
                 double attention_factor, const void* scale, void* y, int64_t b, int64_t tokens,
                 int64_t heads, int64_t d, float direction, cudaStream_t stream) {
  ROTOR_CHECK(d % 2 == 0) << "rope: head dim must be even, got " << d;
  const int64_t rows = b * tokens;
  if (rows == 0 || heads == 0 || d == 0) return;
  const float af = static_cast<float>(attention_factor);
  const size_t shared = static_cast<size_t>(d) * sizeof(float);
  dispatch(t, [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = kVec<T>;
    const T* xp = static_cast<const T*>(x);
    const T* sp = static_cast<const T*>(scale);
    T* yp = static_cast<T*>(y);
    if ((d / 2) % V == 0 && aligned16(x) && aligned16(y)) {
      rope_kernel<T, V><<<static_cast<unsigned>(rows), kThreads, shared, stream>>>(
          xp, pos, inv_freq, af, sp, yp, heads, d, direction);
    } else {
      rope_kernel<T, 1><<<static_cast<unsigned>(rows), kThreads, shared, stream>>>(
          xp, pos, inv_freq, af, sp, yp, heads, d, direction);
    }
    ROTOR_CUDA_LAUNCHED("rope_kernel", stream);
  });
}

}  // namespace

void rope_forward(Float t, const void* x, const int32_t* pos, const float* inv_freq,
                  double attention_factor, const void* scale, void* y, int64_t b, int64_t tokens,
                  int64_t heads, int64_t d, cudaStream_t stream) {
  rope_launch(t, x, pos, inv_freq, attention_factor, scale, y, b, tokens, heads, d, 1.0f, stream);
}

// The transpose: rotation by -a (s negated), dx (=) from dy; dx may alias dy.
void rope_backward(Float t, const void* dy, const int32_t* pos, const float* inv_freq,
                   double attention_factor, const void* scale, void* dx, int64_t b,
                   int64_t tokens, int64_t heads, int64_t d, cudaStream_t stream) {
  rope_launch(t, dy, pos, inv_freq, attention_factor, scale, dx, b, tokens, heads, d, -1.0f,
              stream);
}

}  // namespace rotor::cuda
