// Rotary position embedding applied to q or k, with the query logit
// multiplier fused in.
//   x, y      [B, T, H, D]   D even; pair i = dims (i, i + D/2) (rotate-half, HF)
//   pos       [B, T] i32     global position of each token
//   inv_freq  [D/2] f32      from model/rope (compute_rope)
//   scale     [B, T] (optional, x's dtype): per-token multiplier of the output
//             (the entropy-aware logit scalar on q; undefined = 1)
// x, y (dy, dx) and scale share one dtype, f32 or bf16 (f64 on the CPU); the
// rotation is computed in f32 (f64) and rounded to bf16 once at the store.
// With a = pos * inv_freq[i] (in f32, as HF computes its angles), c = af*cos(a),
// s = af*sin(a) (af = attention_factor, YaRN's mscale) and m = scale[b, t]:
//   y[i]       = m * (x[i] * c - x[i + D/2] * s)
//   y[i + D/2] = m * (x[i + D/2] * c + x[i] * s)
// Backward is the transpose (rotation by -a): dx (=) from dy. x and y may alias
// (in place), as may dy and dx.
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void rope_forward(const Tensor& x, const Tensor& pos, const Tensor& inv_freq,
                  double attention_factor, const Tensor& scale, const Tensor& y);
void rope_backward(const Tensor& dy, const Tensor& pos, const Tensor& inv_freq,
                   double attention_factor, const Tensor& scale, const Tensor& dx);

}  // namespace rotor
