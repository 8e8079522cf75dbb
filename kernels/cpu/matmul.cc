// CPU matmul through OpenBLAS (cblas_sgemm / cblas_dgemm).
#include "kernels/matmul.h"

#include "kernels/cuda/ops.h"

#include <cblas.h>

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
  check_same_dtype(a, c, "matmul");
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
  if (a.dtype() == DType::kF32) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), a.data<float>(), lda,
                b.data<float>(), ldb, static_cast<float>(beta), c.data<float>(), ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data<double>(), lda, b.data<double>(),
                ldb, beta, c.data<double>(), ldc);
  }
}

}  // namespace rotor
