// The entropy-aware query multiplier of log_position logit scaling
// (model/rope.h: logit_scale_at), per token, from the batch's positions:
//   pos  [B, T] i32   global positions
//   out  [B, T] float (=)  max(min, ln(pos + 1) / ln(base_length))
// computed in f64 and rounded once to out's dtype, as the host formula is.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace rotor {

void log_position_scale(const Tensor& pos, int64_t base_length, double min, const Tensor& out);

}  // namespace rotor
