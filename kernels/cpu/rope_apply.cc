// CPU reference: rotary embedding with the fused per-token multiplier. x, y
// and scale in one storage dtype (f32, bf16 or f64); math in its compute dtype.
#include "kernels/rope_apply.h"

#include <cmath>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

namespace {

void check_args(const Tensor& x, const Tensor& pos, const Tensor& inv_freq, const Tensor& scale,
                const Tensor& y, const char* op) {
  for (const Tensor* t : {&x, &pos, &inv_freq, &y}) check_cpu(*t, op);
  check_float(x, op);
  check_same_dtype(x, y, op);
  ROTOR_CHECK_EQ(x.ndim(), 4) << op << ": x must be [B, T, H, D], got " << x.str();
  ROTOR_CHECK(y.shape() == x.shape()) << op << ": y " << y.str() << " vs x " << x.str();
  const int64_t b = x.dim(0), t = x.dim(1), d = x.dim(3);
  ROTOR_CHECK(d % 2 == 0) << op << ": head dim must be even, got " << d;
  ROTOR_CHECK(pos.dtype() == DType::kI32 && pos.numel() == b * t)
      << op << ": pos must be [B, T] i32, got " << pos.str();
  ROTOR_CHECK(inv_freq.dtype() == DType::kF32 && inv_freq.numel() == d / 2)
      << op << ": inv_freq must be [D/2] f32, got " << inv_freq.str();
  if (scale.defined()) {
    check_cpu(scale, op);
    check_same_dtype(x, scale, op);
    ROTOR_CHECK_EQ(scale.numel(), b * t) << op << ": scale must be [B, T]";
  }
}

// direction +1: forward rotation by +a; -1: the transpose (backward).
void rope_rotate(const Tensor& x, const Tensor& pos, const Tensor& inv_freq, double af,
                 const Tensor& scale, const Tensor& y, int direction, const char* op) {
  check_args(x, pos, inv_freq, scale, y, op);
  const int64_t bt = x.dim(0) * x.dim(1), nh = x.dim(2), d = x.dim(3), half = d / 2;
  const int32_t* pp = pos.data<int32_t>();
  const float* fq = inv_freq.data<float>();
  cpu::dispatch_storage(x.dtype(), op, [&]<class T>() {
    using C = cpu::compute_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T* sp = scale.defined() ? scale.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (cpu::worth_threads(bt * nh * d))
    for (int64_t r = 0; r < bt; ++r) {
      const C m = sp ? cpu::load(sp[r]) : C(1);
      for (int64_t i = 0; i < half; ++i) {
        // f32 angle like HF (fp32 inv_freq @ fp32 positions); f64 in tests.
        const C a = static_cast<C>(pp[r]) * static_cast<C>(fq[i]);
        const C c = static_cast<C>(af) * std::cos(a) * m;
        const C s = static_cast<C>(af) * std::sin(a) * m * static_cast<C>(direction);
        for (int64_t h = 0; h < nh; ++h) {
          const int64_t o = (r * nh + h) * d;
          const C x1 = cpu::load(xp[o + i]), x2 = cpu::load(xp[o + i + half]);
          cpu::store(yp[o + i], x1 * c - x2 * s);
          cpu::store(yp[o + i + half], x2 * c + x1 * s);
        }
      }
    }
  });
}

}  // namespace

void rope_forward(const Tensor& x, const Tensor& pos, const Tensor& inv_freq,
                  double attention_factor, const Tensor& scale, const Tensor& y) {
  ROTOR_ON_GPU(x, cuda::rope_forward(x, pos, inv_freq, attention_factor, scale, y));
  rope_rotate(x, pos, inv_freq, attention_factor, scale, y, +1, "rope_forward");
}

void rope_backward(const Tensor& dy, const Tensor& pos, const Tensor& inv_freq,
                   double attention_factor, const Tensor& scale, const Tensor& dx) {
  ROTOR_ON_GPU(dy, cuda::rope_backward(dy, pos, inv_freq, attention_factor, scale, dx));
  rope_rotate(dy, pos, inv_freq, attention_factor, scale, dx, -1, "rope_backward");
}

}  // namespace rotor
