// CPU matmul through OpenBLAS (cblas_sgemm / cblas_dgemm). bf16 operands are
// widened to f32 copies and multiplied by sgemm (exact products, f32 sums as
// for f32 operands); a bf16 c is widened too (when beta reads it) and rounded
// back once at the end. An f32 c takes the product of bf16 operands directly.
#include "kernels/matmul.h"

#include "kernels/cuda/ops.h"

#include <cblas.h>

#include "kernels/cpu/dispatch.h"
#include "kernels/elementwise.h"

namespace rotor {

void matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a, bool trans_b,
            double alpha, double beta) {
  ROTOR_ON_GPU(a, cuda::matmul(a, b, c, trans_a, trans_b, alpha, beta));
  check_cpu(a, "matmul a");
  check_cpu(b, "matmul b");
  check_cpu(c, "matmul c");
  check_float(a, "matmul");
  check_same_dtype(a, b, "matmul");
  ROTOR_CHECK(c.dtype() == a.dtype() || c.dtype() == compute_dtype(a.dtype()))
      << "matmul: c must be " << dtype_name(a.dtype()) << " or "
      << dtype_name(compute_dtype(a.dtype())) << " with " << dtype_name(a.dtype())
      << " operands, got " << c.str();
  ROTOR_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2)
      << "matmul takes 2-D tensors: " << a.str() << ", " << b.str() << ", " << c.str();
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  ROTOR_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n)
      << "matmul shapes: op(a) [" << m << ", " << k << "] @ op(b) [" << kb << ", " << n
      << "] -> c " << c.str();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0) c.zero();
    else scale(c, beta);
    return;
  }
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const blasint lda = static_cast<blasint>(a.dim(1));
  const blasint ldb = static_cast<blasint>(b.dim(1));
  const blasint ldc = static_cast<blasint>(n);
  // f32 and f64 tensors pass through as they are (the same BLAS call as ever).
  const Tensor aw = cpu::widen(a), bw = cpu::widen(b);
  const Tensor cw = beta == 0 ? cpu::wide_output(c) : cpu::widen(c);
  if (aw.dtype() == DType::kF32) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), aw.data<float>(), lda,
                bw.data<float>(), ldb, static_cast<float>(beta), cw.data<float>(), ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, aw.data<double>(), lda, bw.data<double>(),
                ldb, beta, cw.data<double>(), ldc);
  }
  cpu::narrow_into(cw, c);
}

}  // namespace rotor
