// Token embedding lookup.
//   ids   [N] i32, each in [0, V)
//   table [V, D]
//   out   [N, D]   (=)  out[n] = table[ids[n]]
// Backward scatters: dtable[ids[n]] += dout[n]  (accumulates; repeated ids add up).
// Dtypes (kernels/tensor.h): table and out share any dtype (rows are copied
// bit for bit); dout is f32 or bf16 (f64 on the CPU) and dtable, a weight
// gradient, its compute dtype: f32 for bf16 dout, so that repeated ids and
// micro-batches accumulate in f32 (the GPU uses f32 atomics, never bf16).
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out);
void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable);

}  // namespace rotor
