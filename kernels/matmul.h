// General matrix multiply on 2-D row-major tensors (OpenBLAS on the CPU):
//   c = alpha * op(a) @ op(b) + beta * c
// op(a) = a^T when trans_a (a stored [K, M]) else a ([M, K]); likewise b
// ([K, N], or [N, K] when trans_b); c [M, N]. beta = 0 overwrites c (its old
// contents are ignored, even NaN); beta = 1 accumulates.
// A linear layer y = x W^T (W [out, in], HF layout) is matmul(x, W, y, false, true);
// its backward is dx = dy W (matmul(dy, W, dx)) and dW += dy^T x
// (matmul(dy, x, dW, true, false, 1, 1)).
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a = false,
            bool trans_b = false, double alpha = 1.0, double beta = 0.0);

}  // namespace rotor
