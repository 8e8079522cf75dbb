// CPU reference: sum_into, squared_norm_into (kernels/reduce.h).
#include "kernels/reduce.h"

#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/step_ops.h"

namespace rotor {

namespace {
void check_acc(const Tensor& acc, const char* op) {
  check_cpu(acc, op);
  ROTOR_CHECK(acc.dtype() == DType::kF64 && acc.numel() == 1) << op << ": acc must be [1] f64, got " << acc.str();
}
}  // namespace

void sum_into(const Tensor& x, const Tensor& acc) {
  ROTOR_ON_GPU(x, cuda::sum_into(x, acc));
  check_cpu(x, "sum_into");
  check_acc(acc, "sum_into");
  double s = 0;
  cpu::dispatch_float(x.dtype(), "sum_into", [&]<class T>() {
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) s += static_cast<double>(p[i]);
  });
  acc.data<double>()[0] += s;
}

void squared_norm_into(const Tensor& x, const Tensor& acc, double divisor) {
  ROTOR_ON_GPU(x, cuda::squared_norm_into(x, acc, divisor));
  check_cpu(x, "squared_norm_into");
  check_acc(acc, "squared_norm_into");
  acc.data<double>()[0] += cpu::squared_norm_sum(x) / divisor;
}

}  // namespace rotor
