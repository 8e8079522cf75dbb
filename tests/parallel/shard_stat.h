// Test helper for the context-parallel attention tests: a per-head statistic
// of the whole sequence (attention LSE or entropy, [B, H, T], T last) cut to
// rank `rank`'s zigzag shard of cp ([B, H, T / cp], parallel/ring_attention.h:
// context_shard_indices), in the tensor's dtype.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/ring_attention.h"

namespace rotor::testing_mpi {

inline Tensor shard_stat(const Tensor& full, int cp, int rank) {
  const int64_t b = full.dim(0), h = full.dim(1), t = full.dim(2);
  const std::vector<int64_t> idx = context_shard_indices(t, cp, rank);
  const int64_t tl = static_cast<int64_t>(idx.size());
  Tensor f64 = Tensor::empty(full.shape(), DType::kF64);
  f64.copy_from(full);
  Tensor out = Tensor::empty({b, h, tl}, DType::kF64);
  for (int64_t i = 0; i < b * h; ++i)
    for (int64_t j = 0; j < tl; ++j) out.data<double>()[i * tl + j] = f64.data<double>()[i * t + idx[j]];
  Tensor back = Tensor::empty({b, h, tl}, full.dtype());
  back.copy_from(out);
  return back;
}

}  // namespace rotor::testing_mpi
