// AdamW (decoupled weight decay, as torch.optim.AdamW) on fp32 master weights.
//   param, m, v        same shape, f32 (f64 allowed for tests)
//   grad               same shape, param's dtype, or bf16 with f32 param
//                      (widened to f32 as it is read)
//   step               1-based step number, for bias correction
// Per element:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr * weight_decay * p
//   p = p - lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)
// `grad_scale` multiplies g first (gradient clipping: min(1, max_norm / norm)).
// If `working` is defined (same shape, bf16 or f32), the updated parameter is
// also written into it, rounded to nearest even into bf16: the compute copy
// used by forward/backward (train.precision: bf16).
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace rotor {

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                int64_t step, const AdamWHyper& hyper, double grad_scale = 1.0,
                const Tensor& working = Tensor());

}  // namespace rotor
