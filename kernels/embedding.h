// Token embedding lookup.
//   ids   [N] i32, each in [0, V)
//   table [V, D]
//   out   [N, D]   (=)  out[n] = table[ids[n]]
// Backward scatters: dtable[ids[n]] += dout[n]  (accumulates; repeated ids add up).
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out);
void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable);

}  // namespace rotor
