// The CPU kernel of squared_norm, shared by squared_norm (elementwise.h) and
// squared_norm_into (reduce.h): f64 partial sums per thread, added in thread
// order, so a run is reproducible for a given thread count.
#pragma once

#include "kernels/tensor.h"

namespace rotor::cpu {

double squared_norm_sum(const Tensor& x);

}  // namespace rotor::cpu
