// Row-major GEMM on the GPU through cuBLASLt:
//   c = alpha * op(a) @ op(b) + beta * c
// op(a) [m, k] (a stored [m, k] row-major with leading dimension lda, or
// [k, m] when trans_a), op(b) [k, n] likewise, c [m, n] with ldc. a and b have
// the element type `ab`, c has `ct` (f32 output from bf16 inputs is what the
// cross-entropy tiles use); accumulation and alpha/beta are f32. beta = 0
// does not read c.
//
// cuBLASLt is column-major, so the call computes c^T = op(b)^T op(a)^T: the
// row-major [r, c] matrices are the column-major [c, r] ones with the same
// memory, and the operands swap places.
#pragma once

#include <cstdint>

#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"

namespace rotor::cuda {

void gemm(DeviceContext& ctx, Float ab, const void* a, const void* b, Float ct, void* c, int64_t m, int64_t n,
          int64_t k, bool trans_a, bool trans_b, int64_t lda, int64_t ldb, int64_t ldc, double alpha, double beta);

}  // namespace rotor::cuda
