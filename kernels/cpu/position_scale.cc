// CPU reference: log_position_scale (kernels/position_scale.h).
#include "kernels/position_scale.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/step_ops.h"

namespace rotor {

void log_position_scale(const Tensor& pos, int64_t base_length, double min, const Tensor& out) {
  ROTOR_ON_GPU(pos, cuda::log_position_scale(pos, base_length, min, out));
  check_cpu(pos, "log_position_scale pos");
  check_cpu(out, "log_position_scale out");
  ROTOR_CHECK(pos.dtype() == DType::kI32 && pos.numel() == out.numel())
      << "log_position_scale: pos [B, T] i32 and out [B, T], got " << pos.str() << " and " << out.str();
  ROTOR_CHECK_GE(base_length, 2) << "log_position_scale: base_length";
  const int32_t* p = pos.data<int32_t>();
  const double log_base = std::log(static_cast<double>(base_length));
  cpu::dispatch_storage(out.dtype(), "log_position_scale", [&]<class T>() {
    T* o = out.data<T>();
    for (int64_t i = 0; i < pos.numel(); ++i) {
      const double v = std::max(min, std::log(static_cast<double>(p[i]) + 1.0) / log_base);
      cpu::store(o[i], static_cast<cpu::compute_t<T>>(v));  // bf16: rounded once, from f32
    }
  });
}

}  // namespace rotor
