// General matrix multiply on 2-D row-major tensors (OpenBLAS on the CPU):
//   c = alpha * op(a) @ op(b) + beta * c
// op(a) = a^T when trans_a (a stored [K, M]) else a ([M, K]); likewise b
// ([K, N], or [N, K] when trans_b); c [M, N]. beta = 0 overwrites c (its old
// contents are ignored, even NaN); beta = 1 accumulates.
// Dtypes: a and b share one dtype, f32 or bf16 (f64 on the CPU); c is that
// dtype or its compute dtype (kernels/tensor.h): bf16 a and b may write an f32
// c, as weight gradients of bf16 activations do (dW += dy^T x into f32 dW).
// Products and sums are f32 (f64 for f64); a bf16 c is rounded once at the end
// (on the CPU bf16 operands are widened to f32 copies for sgemm; on the GPU
// cuBLASLt takes them as CUDA_R_16BF with compute 32F).
// A linear layer y = x W^T (W [out, in], HF layout) is matmul(x, W, y, false, true);
// its backward is dx = dy W (matmul(dy, W, dx)) and dW += dy^T x
// (matmul(dy, x, dW, true, false, 1, 1)).
#pragma once

#include "kernels/tensor.h"

namespace rotor {

void matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a = false,
            bool trans_b = false, double alpha = 1.0, double beta = 0.0);

}  // namespace rotor
