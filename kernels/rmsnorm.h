// RMSNorm as in Llama / HF LlamaRMSNorm:
//   rstd[n] = 1 / sqrt(mean_d x[n, d]^2 + eps)
//   y[n, d] = x[n, d] * rstd[n] * w[d]
// Shapes: x, y, dx, dy [N, D]; w, dw [D]; rstd [N] (saved for backward).
// Dtypes (kernels/tensor.h): x, w, y, dy, dx share one storage dtype, f32 or
// bf16 (f64 on the CPU); rstd and dw are in its compute dtype (f32 for bf16),
// and the sums run in it. rstd is f32 rather than bf16 because backward
// multiplies by rstd^3: a bf16 rstd would put up to 3 * 2^-8 of relative error
// into every dx, where the f32 one costs 4 bytes per token.
// Backward, with g = w * dy:
//   dx[n, d] = rstd[n] * (g[n, d] - x[n, d] * rstd[n]^2 * mean_d(g[n, :] * x[n, :]))   (=)
//   dw[d]   += sum_n dy[n, d] * x[n, d] * rstd[n]                                     (+=)
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void rmsnorm_forward(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd);
void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                      const Tensor& dx, const Tensor& dw);

}  // namespace rotor
