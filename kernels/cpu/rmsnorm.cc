// CPU reference: RMSNorm forward/backward (see kernels/rmsnorm.h for the math
// and the dtypes: x, w, y, dy, dx in the storage dtype T; rstd and dw in its
// compute dtype C, in which every sum runs).
#include "kernels/rmsnorm.h"

#include <cmath>
#include <vector>

#include <omp.h>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

namespace {
void check_args(const Tensor& x, const Tensor& w, const Tensor& rstd, const char* op) {
  check_cpu(x, op);
  check_cpu(w, op);
  check_cpu(rstd, op);
  check_float(x, op);
  check_same_dtype(x, w, op);
  check_compute_dtype(rstd, x.dtype(), op, "rstd");
  ROTOR_CHECK_EQ(x.ndim(), 2) << op << ": x must be [N, D], got " << x.str();
  ROTOR_CHECK_EQ(w.numel(), x.dim(1)) << op << ": w must be [D]";
  ROTOR_CHECK_EQ(rstd.numel(), x.dim(0)) << op << ": rstd must be [N]";
}
}  // namespace

void rmsnorm_forward(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd) {
  ROTOR_ON_GPU(x, cuda::rmsnorm_forward(x, w, eps, y, rstd));
  check_args(x, w, rstd, "rmsnorm_forward");
  ROTOR_CHECK(y.shape() == x.shape()) << "rmsnorm y " << y.str();
  check_same_dtype(x, y, "rmsnorm_forward");
  const int64_t n = x.dim(0), d = x.dim(1);
  cpu::dispatch_storage(x.dtype(), "rmsnorm_forward", [&]<class T>() {
    using C = cpu::compute_t<T>;
    using cpu::load;
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* yp = y.data<T>();
    C* rp = rstd.data<C>();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n * d))
    for (int64_t i = 0; i < n; ++i) {
      const T* xr = xp + i * d;
      C ss = 0;
      for (int64_t j = 0; j < d; ++j) ss += load(xr[j]) * load(xr[j]);
      const C r = C(1) / std::sqrt(ss / C(d) + C(eps));
      rp[i] = r;
      T* yr = yp + i * d;
      for (int64_t j = 0; j < d; ++j) cpu::store(yr[j], load(xr[j]) * r * load(wp[j]));
    }
  });
}

void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                      const Tensor& dx, const Tensor& dw) {
  ROTOR_ON_GPU(x, cuda::rmsnorm_backward(dy, x, w, rstd, dx, dw));
  check_args(x, w, rstd, "rmsnorm_backward");
  ROTOR_CHECK(dy.shape() == x.shape() && dx.shape() == x.shape()) << "rmsnorm_backward shapes";
  ROTOR_CHECK_EQ(dw.numel(), x.dim(1));
  check_same_dtype(x, dy, "rmsnorm_backward");
  check_same_dtype(x, dx, "rmsnorm_backward");
  check_compute_dtype(dw, x.dtype(), "rmsnorm_backward", "dw");
  const int64_t n = x.dim(0), d = x.dim(1);
  cpu::dispatch_storage(x.dtype(), "rmsnorm_backward", [&]<class T>() {
    using C = cpu::compute_t<T>;
    using cpu::load;
    const T* g = dy.data<T>();
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    const C* rp = rstd.data<C>();
    T* dxp = dx.data<T>();
    C* dwp = dw.data<C>();
    // dw partial sums per thread, reduced in thread order (deterministic).
    const int threads = omp_get_max_threads();
    std::vector<C> partial(static_cast<size_t>(threads) * d, C(0));
#pragma omp parallel num_threads(threads) if (cpu::worth_threads(n * d))
    {
      C* mine = partial.data() + static_cast<size_t>(omp_get_thread_num()) * d;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const T* gr = g + i * d;
        const T* xr = xp + i * d;
        const C r = rp[i];
        C dot = 0;  // sum_j (w_j dy_j) x_j
        for (int64_t j = 0; j < d; ++j) dot += load(wp[j]) * load(gr[j]) * load(xr[j]);
        const C c = r * r * dot / C(d);
        T* dxr = dxp + i * d;
        for (int64_t j = 0; j < d; ++j) {
          cpu::store(dxr[j], r * (load(wp[j]) * load(gr[j]) - load(xr[j]) * c));
          mine[j] += load(gr[j]) * load(xr[j]) * r;
        }
      }
    }
    for (int t = 0; t < threads; ++t)
      for (int64_t j = 0; j < d; ++j) dwp[j] += partial[static_cast<size_t>(t) * d + j];
  });
}

}  // namespace rotor
