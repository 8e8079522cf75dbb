// CPU reference: one AdamW step on fp32 master weights.
#include "kernels/adamw.h"

#include <cmath>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                int64_t step, const AdamWHyper& hp, double grad_scale, const Tensor& working) {
  ROTOR_ON_GPU(param, cuda::adamw_step(param, grad, m, v, step, hp, grad_scale, working));
  for (const Tensor* t : {&param, &grad, &m, &v}) {
    check_cpu(*t, "adamw_step");
    check_same_dtype(param, *t, "adamw_step");
    ROTOR_CHECK(t->shape() == param.shape()) << "adamw_step: " << t->str() << " vs "
                                             << param.str();
  }
  ROTOR_CHECK_GE(step, 1) << "adamw_step: step is 1-based";
  if (working.defined()) {
    check_cpu(working, "adamw_step working copy");
    ROTOR_CHECK(working.shape() == param.shape()) << "adamw_step working copy shape";
  }
  const double bc1 = 1.0 - std::pow(hp.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(hp.beta2, static_cast<double>(step));
  cpu::dispatch_float(param.dtype(), "adamw_step", [&]<class T>() {
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* mp = m.data<T>();
    T* vp = v.data<T>();
    const T b1 = T(hp.beta1), b2 = T(hp.beta2), lr = T(hp.lr), eps = T(hp.eps);
    const T decay = T(1) - T(hp.lr * hp.weight_decay);
    const T gs = T(grad_scale), c1 = T(bc1), sqrt_c2 = T(std::sqrt(bc2));
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(8 * n))
    for (int64_t i = 0; i < n; ++i) {
      const T gi = g[i] * gs;
      mp[i] = b1 * mp[i] + (T(1) - b1) * gi;
      vp[i] = b2 * vp[i] + (T(1) - b2) * gi * gi;
      // torch's formulation: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
      p[i] = p[i] * decay - (lr / c1) * mp[i] / (std::sqrt(vp[i]) / sqrt_c2 + eps);
    }
  });
  if (working.defined()) working.copy_from(param);
}

}  // namespace rotor
