// CPU reference: the vocabulary-slice embedding and cross-entropy combine
// (kernels/vocab_slice.h).
#include "kernels/vocab_slice.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/step_ops.h"

namespace rotor {

void embedding_slice_forward(const Tensor& ids, const Tensor& table, int64_t vocab_start, const Tensor& out) {
  ROTOR_ON_GPU(ids, cuda::embedding_slice_forward(ids, table, vocab_start, out));
  for (const Tensor* t : {&ids, &table, &out}) check_cpu(*t, "embedding_slice_forward");
  const int64_t n = ids.numel(), vs = table.dim(0);
  const size_t row = table.nbytes() / static_cast<size_t>(vs);
  ROTOR_CHECK(ids.dtype() == DType::kI32 && out.dtype() == table.dtype() && out.dim(0) == n &&
              out.nbytes() == static_cast<size_t>(n) * row)
      << "embedding_slice_forward: ids [N] i32, out [N, D] like the table, got " << ids.str() << " "
      << table.str() << " " << out.str();
  const int32_t* id = ids.data<int32_t>();
  const char* src = static_cast<const char*>(table.raw());
  char* dst = static_cast<char*>(out.raw());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t local = id[i] - vocab_start;
    if (local >= 0 && local < vs) std::memcpy(dst + i * row, src + local * row, row);
    else std::memset(dst + i * row, 0, row);
  }
}

void embedding_slice_backward(const Tensor& ids, const Tensor& dout, int64_t vocab_start, const Tensor& dtable) {
  ROTOR_ON_GPU(ids, cuda::embedding_slice_backward(ids, dout, vocab_start, dtable));
  for (const Tensor* t : {&ids, &dout, &dtable}) check_cpu(*t, "embedding_slice_backward");
  check_compute_dtype(dtable, dout.dtype(), "embedding_slice_backward", "dtable");
  const int64_t n = ids.numel(), vs = dtable.dim(0), d = dtable.dim(1);
  ROTOR_CHECK(ids.dtype() == DType::kI32 && dout.numel() == n * d)
      << "embedding_slice_backward: ids [N] i32, dout [N, D], got " << ids.str() << " " << dout.str();
  const int32_t* id = ids.data<int32_t>();
  const Tensor dout_wide = cpu::widen(dout);  // bf16 rows are added to an f32 table
  cpu::dispatch_float(dtable.dtype(), "embedding_slice_backward", [&]<class T>() {
    const T* dy = dout_wide.data<T>();
    T* g = dtable.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t local = id[i] - vocab_start;
      if (local < 0 || local >= vs) continue;
      for (int64_t c = 0; c < d; ++c) g[local * d + c] += dy[i * d + c];
    }
  });
}

namespace {
void check_slice_args(const Tensor& lse, const Tensor& loss, const Tensor& targets, const Tensor& max_lse,
                      const Tensor& sums, const char* op) {
  for (const Tensor* t : {&lse, &loss, &targets, &max_lse, &sums}) check_cpu(*t, op);
  const int64_t n = lse.numel();
  ROTOR_CHECK(loss.numel() == n && targets.numel() == n && max_lse.numel() == n && sums.numel() == 2 * n &&
              targets.dtype() == DType::kI32)
      << op << ": lse, loss, max_lse [N], targets [N] i32, sums [2N]; got " << lse.str() << " " << loss.str()
      << " " << targets.str() << " " << max_lse.str() << " " << sums.str();
  for (const Tensor* t : {&loss, &max_lse, &sums}) check_same_dtype(lse, *t, op);
}
}  // namespace

void cross_entropy_slice_partials(const Tensor& lse, const Tensor& loss, const Tensor& targets,
                                  int64_t vocab_start, int64_t vocab_rows, const Tensor& max_lse,
                                  const Tensor& sums) {
  ROTOR_ON_GPU(lse, cuda::cross_entropy_slice_partials(lse, loss, targets, vocab_start, vocab_rows, max_lse, sums));
  check_slice_args(lse, loss, targets, max_lse, sums, "cross_entropy_slice_partials");
  const int64_t n = lse.numel();
  const int32_t* tg = targets.data<int32_t>();
  cpu::dispatch_float(lse.dtype(), "cross_entropy_slice_partials", [&]<class T>() {
    const T *l = lse.data<T>(), *ls = loss.data<T>(), *m = max_lse.data<T>();
    T* s = sums.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const double mi = m[i], li = l[i];
      s[i] = static_cast<T>(std::isfinite(mi) ? std::exp(li - mi) : 0.0);
      const int64_t t = tg[i];
      s[n + i] = static_cast<T>(t >= vocab_start && t < vocab_start + vocab_rows ? li - static_cast<double>(ls[i]) : 0.0);
    }
  });
}

void cross_entropy_slice_combine(const Tensor& max_lse, const Tensor& sums, const Tensor& targets,
                                 const Tensor& lse, const Tensor& loss) {
  ROTOR_ON_GPU(lse, cuda::cross_entropy_slice_combine(max_lse, sums, targets, lse, loss));
  check_slice_args(lse, loss, targets, max_lse, sums, "cross_entropy_slice_combine");
  const int64_t n = lse.numel();
  const int32_t* tg = targets.data<int32_t>();
  cpu::dispatch_float(lse.dtype(), "cross_entropy_slice_combine", [&]<class T>() {
    const T *m = max_lse.data<T>(), *s = sums.data<T>();
    T *l = lse.data<T>(), *ls = loss.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const double whole = static_cast<double>(m[i]) + std::log(static_cast<double>(s[i]));
      l[i] = static_cast<T>(whole);
      ls[i] = static_cast<T>(tg[i] < 0 ? 0.0 : whole - static_cast<double>(s[n + i]));
    }
  });
}

}  // namespace rotor
