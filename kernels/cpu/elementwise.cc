// CPU reference: add, axpy, scale, squared_norm, cast.
#include "kernels/elementwise.h"

#include <vector>

#include <omp.h>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

void add(const Tensor& a, const Tensor& b, const Tensor& out) {
  ROTOR_ON_GPU(a, cuda::add(a, b, out));
  for (const Tensor* t : {&a, &b, &out}) check_cpu(*t, "add");
  check_same_dtype(a, b, "add");
  check_same_dtype(a, out, "add");
  ROTOR_CHECK(a.numel() == b.numel() && a.numel() == out.numel()) << "add shapes";
  cpu::dispatch_float(a.dtype(), "add", [&]<class T>() {
    const T* x = a.data<T>();
    const T* y = b.data<T>();
    T* z = out.data<T>();
    const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) z[i] = x[i] + y[i];
  });
}

void axpy(double alpha, const Tensor& x, const Tensor& y) {
  ROTOR_ON_GPU(x, cuda::axpy(alpha, x, y));
  check_cpu(x, "axpy");
  check_cpu(y, "axpy");
  check_same_dtype(x, y, "axpy");
  ROTOR_CHECK_EQ(x.numel(), y.numel());
  cpu::dispatch_float(x.dtype(), "axpy", [&]<class T>() {
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T a = static_cast<T>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) yp[i] += a * xp[i];
  });
}

void scale(const Tensor& x, double alpha) {
  ROTOR_ON_GPU(x, cuda::scale(x, alpha));
  check_cpu(x, "scale");
  cpu::dispatch_float(x.dtype(), "scale", [&]<class T>() {
    T* p = x.data<T>();
    const T a = static_cast<T>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) p[i] *= a;
  });
}

double squared_norm(const Tensor& x) {
  ROTOR_ON_GPU(x, cuda::squared_norm(x));
  check_cpu(x, "squared_norm");
  double total = 0;
  cpu::dispatch_float(x.dtype(), "squared_norm", [&]<class T>() {
    const T* p = x.data<T>();
    const int64_t n = x.numel();
    const int threads = omp_get_max_threads();
    std::vector<double> partial(threads, 0.0);
#pragma omp parallel num_threads(threads) if (cpu::worth_threads(n))
    {
      double s = 0;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]) * p[i];
      partial[omp_get_thread_num()] = s;
    }
    for (double s : partial) total += s;
  });
  return total;
}

void cast(const Tensor& src, const Tensor& dst) {
  ROTOR_ON_GPU(src, cuda::cast(src, dst));
  dst.copy_from(src);
}

}  // namespace rotor
