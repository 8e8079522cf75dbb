// CPU reference: one AdamW step on fp32 master weights (f64 in tests); the
// gradient may be bf16 (widened to f32 as it is read), the working copy f32
// or bf16 (rounded once, by copy_from).
#include "kernels/adamw.h"

#include <cmath>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

namespace {

// param, m, v: T (f32 or f64); grad: G (T, or bf16 when T is f32).
template <class T, class G>
void adamw_loop(T* p, const G* g, T* mp, T* vp, int64_t n, const AdamWHyper& hp, double bc1,
                double bc2, double grad_scale) {
  const T b1 = T(hp.beta1), b2 = T(hp.beta2), lr = T(hp.lr), eps = T(hp.eps);
  const T decay = T(1) - T(hp.lr * hp.weight_decay);
  const T gs = T(grad_scale), c1 = T(bc1), sqrt_c2 = T(std::sqrt(bc2));
#pragma omp parallel for schedule(static) if (cpu::worth_threads(8 * n))
  for (int64_t i = 0; i < n; ++i) {
    const T gi = cpu::load(g[i]) * gs;
    mp[i] = b1 * mp[i] + (T(1) - b1) * gi;
    vp[i] = b2 * vp[i] + (T(1) - b2) * gi * gi;
    // torch's formulation: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
    p[i] = p[i] * decay - (lr / c1) * mp[i] / (std::sqrt(vp[i]) / sqrt_c2 + eps);
  }
}

}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                int64_t step, const AdamWHyper& hp, double grad_scale, const Tensor& working) {
  ROTOR_ON_GPU(param, cuda::adamw_step(param, grad, m, v, step, hp, grad_scale, working));
  for (const Tensor* t : {&param, &grad, &m, &v}) {
    check_cpu(*t, "adamw_step");
    ROTOR_CHECK(t->shape() == param.shape()) << "adamw_step: " << t->str() << " vs "
                                             << param.str();
  }
  check_same_dtype(param, m, "adamw_step");
  check_same_dtype(param, v, "adamw_step");
  const bool bf16_grad = grad.dtype() == DType::kBF16 && param.dtype() == DType::kF32;
  ROTOR_CHECK(bf16_grad || grad.dtype() == param.dtype())
      << "adamw_step: grad must be " << dtype_name(param.dtype())
      << (param.dtype() == DType::kF32 ? " or bf16" : "") << " like the parameter, got "
      << grad.str();
  ROTOR_CHECK_GE(step, 1) << "adamw_step: step is 1-based";
  if (working.defined()) {
    check_cpu(working, "adamw_step working copy");
    check_float(working, "adamw_step working copy");
    ROTOR_CHECK(working.shape() == param.shape()) << "adamw_step working copy shape";
  }
  const double bc1 = 1.0 - std::pow(hp.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(hp.beta2, static_cast<double>(step));
  cpu::dispatch_float(param.dtype(), "adamw_step", [&]<class T>() {
    if constexpr (std::is_same_v<T, float>) {
      if (bf16_grad) {
        adamw_loop(param.data<T>(), grad.data<bf16>(), m.data<T>(), v.data<T>(), param.numel(), hp,
                   bc1, bc2, grad_scale);
        return;
      }
    }
    adamw_loop(param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), param.numel(), hp, bc1,
               bc2, grad_scale);
  });
  if (working.defined()) working.copy_from(param);
}

}  // namespace rotor
