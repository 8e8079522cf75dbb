// CPU reference: SwiGLU h = silu(gate) * up and its backward; every tensor in
// one storage dtype (f32, bf16 or f64), math in its compute dtype.
#include "kernels/swiglu.h"

#include <cmath>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& h) {
  ROTOR_ON_GPU(gate, cuda::swiglu_forward(gate, up, h));
  for (const Tensor* t : {&gate, &up, &h}) check_cpu(*t, "swiglu_forward");
  check_same_dtype(gate, up, "swiglu_forward");
  check_same_dtype(gate, h, "swiglu_forward");
  ROTOR_CHECK(gate.shape() == up.shape() && gate.shape() == h.shape()) << "swiglu shapes";
  cpu::dispatch_storage(gate.dtype(), "swiglu_forward", [&]<class T>() {
    using C = cpu::compute_t<T>;
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    T* o = h.data<T>();
    const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) {
      const C gi = cpu::load(g[i]);
      const C sig = C(1) / (C(1) + std::exp(-gi));
      cpu::store(o[i], gi * sig * cpu::load(u[i]));
    }
  });
}

void swiglu_backward(const Tensor& dh, const Tensor& gate, const Tensor& up,
                     const Tensor& dgate, const Tensor& dup) {
  ROTOR_ON_GPU(dh, cuda::swiglu_backward(dh, gate, up, dgate, dup));
  for (const Tensor* t : {&dh, &gate, &up, &dgate, &dup}) {
    check_cpu(*t, "swiglu_backward");
    check_same_dtype(gate, *t, "swiglu_backward");
    ROTOR_CHECK(t->shape() == gate.shape()) << "swiglu_backward shapes";
  }
  cpu::dispatch_storage(gate.dtype(), "swiglu_backward", [&]<class T>() {
    using C = cpu::compute_t<T>;
    const T* d = dh.data<T>();
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    T* dg = dgate.data<T>();
    T* du = dup.data<T>();
    const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) {
      const C gi = cpu::load(g[i]), di = cpu::load(d[i]);
      const C sig = C(1) / (C(1) + std::exp(-gi));
      const C silu = gi * sig;
      const C dgi = di * cpu::load(u[i]) * sig * (C(1) + gi * (C(1) - sig));
      cpu::store(du[i], di * silu);
      cpu::store(dg[i], dgi);  // written after reading d[i]: dgate may alias dh
    }
  });
}

}  // namespace rotor
