#include "eval/batch.h"

#include <algorithm>

namespace rotor {

// A [rows, len] batch; segment ids only with document masking.
Batch empty_batch(int64_t rows, int64_t len, bool masking) {
  Batch b;
  b.input_ids = Tensor::empty({rows, len}, DType::kI32);
  b.targets = Tensor::empty({rows, len}, DType::kI32);
  b.positions = Tensor::empty({rows, len}, DType::kI32);
  if (masking) b.segments = Tensor::empty({rows, len}, DType::kI32);
  return b;
}

// Copies a packed sample into row `r` of `b`.
void put_sample(const Batch& b, int64_t r, const PackedSample& s) {
  const int64_t len = b.input_ids.dim(1);
  std::copy(s.ids.begin(), s.ids.end(), b.input_ids.data<int32_t>() + r * len);
  std::copy(s.targets.begin(), s.targets.end(), b.targets.data<int32_t>() + r * len);
  std::copy(s.positions.begin(), s.positions.end(), b.positions.data<int32_t>() + r * len);
  if (b.segments.defined())
    std::copy(s.segments.begin(), s.segments.end(), b.segments.data<int32_t>() + r * len);
}

}  // namespace rotor
