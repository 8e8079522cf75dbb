// CPU reference: add, axpy, scale, squared_norm, cast. f32, bf16 (math in
// f32, rounded once at the store) and f64.
#include "kernels/elementwise.h"

#include <cstring>
#include <vector>

#include <omp.h>

#include "kernels/cuda/memory.h"
#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/threads.h"
#include "kernels/sim.h"

namespace rotor {

void add(const Tensor& a, const Tensor& b, const Tensor& out) {
  ROTOR_ON_GPU(a, cuda::add(a, b, out));
  for (const Tensor* t : {&a, &b, &out}) check_cpu(*t, "add");
  check_same_dtype(a, b, "add");
  check_same_dtype(a, out, "add");
  ROTOR_CHECK(a.numel() == b.numel() && a.numel() == out.numel()) << "add shapes";
  cpu::dispatch_storage(a.dtype(), "add", [&]<class T>() {
    const T* x = a.data<T>();
    const T* y = b.data<T>();
    T* z = out.data<T>();
    const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) cpu::store(z[i], cpu::load(x[i]) + cpu::load(y[i]));
  });
}

void axpy(double alpha, const Tensor& x, const Tensor& y) {
  ROTOR_ON_GPU(x, cuda::axpy(alpha, x, y));
  check_cpu(x, "axpy");
  check_cpu(y, "axpy");
  check_same_dtype(x, y, "axpy");
  ROTOR_CHECK_EQ(x.numel(), y.numel());
  cpu::dispatch_storage(x.dtype(), "axpy", [&]<class T>() {
    using C = cpu::compute_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const C a = static_cast<C>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) cpu::store(yp[i], cpu::load(yp[i]) + a * cpu::load(xp[i]));
  });
}

void scale(const Tensor& x, double alpha) {
  ROTOR_ON_GPU(x, cuda::scale(x, alpha));
  check_cpu(x, "scale");
  cpu::dispatch_storage(x.dtype(), "scale", [&]<class T>() {
    using C = cpu::compute_t<T>;
    T* p = x.data<T>();
    const C a = static_cast<C>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n))
    for (int64_t i = 0; i < n; ++i) cpu::store(p[i], cpu::load(p[i]) * a);
  });
}

double cpu::squared_norm_sum(const Tensor& x) {
  double total = 0;
  cpu::dispatch_storage(x.dtype(), "squared_norm", [&]<class T>() {
    const T* p = x.data<T>();
    const int64_t n = x.numel();
    const int threads = omp_get_max_threads();
    std::vector<double> partial(threads, 0.0);
#pragma omp parallel num_threads(threads) if (cpu::worth_threads(n))
    {
      double s = 0;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const double v = cpu::load(p[i]);
        s += v * v;
      }
      partial[omp_get_thread_num()] = s;
    }
    for (double s : partial) total += s;
  });
  return total;
}

double squared_norm(const Tensor& x) {
  ROTOR_ON_GPU(x, cuda::squared_norm(x));
  check_cpu(x, "squared_norm");
  const double total = cpu::squared_norm_sum(x);
  if (x.device().is_sim()) sim::count_read(sizeof(double));  // the GPU version copies its result back
  return total;
}

void cast(const Tensor& src, const Tensor& dst) {
  ROTOR_ON_GPU(src, cuda::cast(src, dst));
  dst.copy_from(src);
}

void copy_columns(const Tensor& src, int64_t src_col, const Tensor& dst, int64_t dst_col, int64_t cols) {
  ROTOR_CHECK(src.ndim() == 2 && dst.ndim() == 2 && src.dtype() == dst.dtype() && src.dim(0) == dst.dim(0))
      << "copy_columns: 2-D tensors of one dtype and row count, got " << src.str() << " and " << dst.str();
  ROTOR_CHECK(cols >= 0 && src_col >= 0 && dst_col >= 0 && src_col + cols <= src.dim(1) &&
              dst_col + cols <= dst.dim(1))
      << "copy_columns: columns [" << src_col << ", " << src_col + cols << ") of " << src.str()
      << " into [" << dst_col << ", " << dst_col + cols << ") of " << dst.str();
  const size_t el = dtype_size(src.dtype()), rows = static_cast<size_t>(src.dim(0));
  const size_t width = static_cast<size_t>(cols) * el;
  const size_t src_pitch = static_cast<size_t>(src.dim(1)) * el, dst_pitch = static_cast<size_t>(dst.dim(1)) * el;
  const char* from = static_cast<const char*>(src.device_ptr()) + static_cast<size_t>(src_col) * el;
  char* to = static_cast<char*>(dst.device_ptr()) + static_cast<size_t>(dst_col) * el;
  if (src.device().is_cuda() || dst.device().is_cuda()) {
    const int sd = src.device().is_cpu() ? -1 : src.device().index, dd = dst.device().is_cpu() ? -1 : dst.device().index;
    cuda::copy_2d(to, dst_pitch, dd, from, src_pitch, sd, width, rows);
    return;
  }
  // Host and sim memory: row by row (counted as host <-> sim copies when it
  // crosses, like one cudaMemcpy2D would be one copy; here one per row).
  for (size_t i = 0; i < rows; ++i) {
    char* d = to + i * dst_pitch;
    const char* s = from + i * src_pitch;
    if (src.device() == dst.device()) std::memcpy(d, s, width);
    else if (src.device().is_cpu()) sim::copy_to_device(d, s, width);
    else sim::copy_to_host(d, s, width);
  }
}

}  // namespace rotor
