// RMSNorm as in Llama / HF LlamaRMSNorm:
//   rstd[n] = 1 / sqrt(mean_d x[n, d]^2 + eps)
//   y[n, d] = x[n, d] * rstd[n] * w[d]
// Shapes: x, y, dx, dy [N, D]; w, dw [D]; rstd [N] (saved for backward).
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
