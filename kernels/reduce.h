// Reductions into a scalar that stays on the device, so that a training step
// sums its loss and gradient norm without reading anything back until the one
// read at its end (trainer/train_step.cc).
//   x    any shape, float (f32, f64)
//   acc  [1] f64 on x's device (+=)
// sum_into:           acc += sum_i x_i            the sum formed in f64 first
//                                                  (in index order on the CPU)
// squared_norm_into:  acc += squared_norm(x) / divisor   (kernels/elementwise.h;
//                     divisor: the replicas of a tensor-parallel shard)
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void sum_into(const Tensor& x, const Tensor& acc);
void squared_norm_into(const Tensor& x, const Tensor& acc, double divisor = 1.0);

}  // namespace rotor
