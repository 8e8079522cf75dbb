// CPU reference: embedding lookup and its scatter-add backward.
#include "kernels/embedding.h"

#include <cstring>

#include <omp.h>

#include "kernels/cuda/ops.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/threads.h"

namespace rotor {

void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out) {
  ROTOR_ON_GPU(ids, cuda::embedding_forward(ids, table, out));
  check_cpu(ids, "embedding ids");
  check_cpu(table, "embedding table");
  check_cpu(out, "embedding out");
  ROTOR_CHECK(ids.dtype() == DType::kI32) << "embedding ids must be i32, got " << ids.str();
  ROTOR_CHECK_EQ(table.ndim(), 2);
  const int64_t n = ids.numel(), v = table.dim(0), d = table.dim(1);
  ROTOR_CHECK(out.numel() == n * d) << "embedding out " << out.str() << " for " << n << " ids";
  check_same_dtype(table, out, "embedding");
  const int32_t* id = ids.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    ROTOR_CHECK(id[i] >= 0 && id[i] < v) << "token id " << id[i] << " at " << i
                                         << " outside the vocabulary [0, " << v << ")";
  const size_t row = static_cast<size_t>(d) * dtype_size(table.dtype());
  const char* src = static_cast<const char*>(table.raw());
  char* dst = static_cast<char*>(out.raw());
#pragma omp parallel for schedule(static) if (cpu::worth_threads(n * d))
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * row, src + id[i] * row, row);
}

void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable) {
  ROTOR_ON_GPU(ids, cuda::embedding_backward(ids, dout, dtable));
  check_cpu(ids, "embedding ids");
  check_cpu(dout, "embedding dout");
  check_cpu(dtable, "embedding dtable");
  check_float(dout, "embedding dout");
  check_compute_dtype(dtable, dout.dtype(), "embedding_backward", "dtable");
  const int64_t n = ids.numel(), v = dtable.dim(0), d = dtable.dim(1);
  ROTOR_CHECK_EQ(dout.numel(), n * d);
  const int32_t* id = ids.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    ROTOR_CHECK(id[i] >= 0 && id[i] < v) << "token id " << id[i] << " at " << i
                                         << " outside the vocabulary [0, " << v << ")";
  cpu::dispatch_storage(dout.dtype(), "embedding_backward", [&]<class T>() {
    const T* g = dout.data<T>();
    cpu::compute_t<T>* dt = dtable.data<cpu::compute_t<T>>();
    // Each thread owns a contiguous range of embedding columns, so repeated
    // ids accumulate without races and in token order (deterministic).
#pragma omp parallel if (cpu::worth_threads(n * d))
    {
      const int nth = omp_get_num_threads(), me = omp_get_thread_num();
      const int64_t c0 = d * me / nth, c1 = d * (me + 1) / nth;
      for (int64_t i = 0; i < n; ++i) {
        cpu::compute_t<T>* dst = dt + id[i] * d;
        const T* src = g + i * d;
        for (int64_t c = c0; c < c1; ++c) dst[c] += cpu::load(src[c]);
      }
    }
  });
}

}  // namespace rotor
