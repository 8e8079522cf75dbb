// CUDA kernel of kernels/adamw.h: one AdamW step on f32 master weights.
//
// Parallelisation: grid-stride loop, one thread per 8 elements (16/32-byte
// accesses: param, m, v f32; grad and working f32 or bf16) when every pointer
// is 16-byte aligned, then a scalar tail; else one thread per element.
// Arithmetic in f32 in the CPU reference's order, with every product and sum
// rounded separately (__fmul_rn/__fadd_rn: no FMA contraction, as the CPU
// build has none), so f32 results match the CPU bit for bit; the bias
// corrections and the decay factor are computed on the host as the CPU does.
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace rotor::cuda {

namespace {

constexpr int kThreads = 256;

struct AdamWConst {
  float b1, one_minus_b1, b2, one_minus_b2, eps, decay, gs, lr_over_c1, sqrt_c2;
};

// One element; p, m, v updated in place.
__device__ __forceinline__ void adamw_update(const AdamWConst& k, float g, float& p, float& m,
                                             float& v) {
  const float gi = __fmul_rn(g, k.gs);
  m = __fadd_rn(__fmul_rn(k.b1, m), __fmul_rn(k.one_minus_b1, gi));
  v = __fadd_rn(__fmul_rn(k.b2, v), __fmul_rn(__fmul_rn(k.one_minus_b2, gi), gi));
  // torch's formulation: p = p decay - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.sqrt_c2), k.eps);
  p = __fsub_rn(__fmul_rn(p, k.decay), __fdiv_rn(__fmul_rn(k.lr_over_c1, m), denom));
}

// param, m, v [n] f32; grad [n] G; working [n] W or null.
template <class G, class W, int N>
__global__ void adamw_kernel(float* param, const G* grad, float* m, float* v, W* working,
                             int64_t n, AdamWConst k) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = n / N;
  for (int64_t i = first; i < packs; i += stride) {
    const int64_t o = i * N;
    Pack<float, N> pp = load_pack<float, N>(param + o);
    Pack<float, N> mp = load_pack<float, N>(m + o);
    Pack<float, N> vp = load_pack<float, N>(v + o);
    const Pack<G, N> gp = load_pack<G, N>(grad + o);
#pragma unroll
    for (int j = 0; j < N; ++j) adamw_update(k, to_f32(gp.v[j]), pp.v[j], mp.v[j], vp.v[j]);
    store_pack<float, N>(param + o, pp);
    store_pack<float, N>(m + o, mp);
    store_pack<float, N>(v + o, vp);
    if (working != nullptr) {
      Pack<W, N> wp;
#pragma unroll
      for (int j = 0; j < N; ++j) wp.v[j] = from_f32<W>(pp.v[j]);
      store_pack<W, N>(working + o, wp);
    }
  }
  for (int64_t i = packs * N + first; i < n; i += stride) {
    float p = param[i], mi = m[i], vi = v[i];
    adamw_update(k, to_f32(grad[i]), p, mi, vi);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (working != nullptr) working[i] = from_f32<W>(p);
  }
}

template <class G, class W>
void adamw_launch(float* param, const void* grad, float* m, float* v, void* working, int64_t n,
                  const AdamWConst& k, cudaStream_t stream) {
  const G* g = static_cast<const G*>(grad);
  W* w = static_cast<W*>(working);
  const bool vec = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) &&
                   (working == nullptr || aligned16(working));
  if (vec) {
    adamw_kernel<G, W, 8><<<grid_for(n / 8, kThreads), kThreads, 0, stream>>>(param, g, m, v, w, n, k);
  } else {
    adamw_kernel<G, W, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(param, g, m, v, w, n, k);
  }
  ROTOR_CUDA_LAUNCHED("adamw_kernel", stream);
}

}  // namespace

void adamw_step(float* param, Float grad_t, const void* grad, float* m, float* v, int64_t n,
                int64_t step, double lr, double beta1, double beta2, double eps,
                double weight_decay, double grad_scale, Float working_t, void* working,
                cudaStream_t stream) {
  ROTOR_CHECK_GE(step, 1) << "adamw_step: step is 1-based";
  if (n == 0) return;
  // As the CPU reference: bias corrections in f64, constants rounded to f32.
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  AdamWConst k;
  k.b1 = static_cast<float>(beta1);
  k.one_minus_b1 = 1.0f - k.b1;
  k.b2 = static_cast<float>(beta2);
  k.one_minus_b2 = 1.0f - k.b2;
  k.eps = static_cast<float>(eps);
  k.decay = 1.0f - static_cast<float>(lr * weight_decay);
  k.gs = static_cast<float>(grad_scale);
  k.lr_over_c1 = static_cast<float>(lr) / static_cast<float>(bc1);
  k.sqrt_c2 = static_cast<float>(std::sqrt(bc2));
  // The working copy's type only matters when there is one.
  const bool w_bf16 = working != nullptr && working_t == Float::kBF16;
  if (grad_t == Float::kF32) {
    if (w_bf16) adamw_launch<float, bf16_t>(param, grad, m, v, working, n, k, stream);
    else adamw_launch<float, float>(param, grad, m, v, working, n, k, stream);
  } else {
    if (w_bf16) adamw_launch<bf16_t, bf16_t>(param, grad, m, v, working, n, k, stream);
    else adamw_launch<bf16_t, float>(param, grad, m, v, working, n, k, stream);
  }
}

}  // namespace rotor::cuda
