// Data parallel: summing gradients over the ranks that hold the same
// parameters and different tokens (ParallelContext::dp_cp: the dp replicas and,
// inside each, the cp ranks, whose shards of a sequence give partial sums).
//
// The trainer scales every rank's backward by 1 / (tokens counted over all
// ranks), so after the sum each rank holds the gradient of the global mean
// loss, the same as one process running the whole global batch.
//
// Bucketing: gradients are packed in parameter order into flat buffers of at
// most `bucket_bytes` (a parameter larger than that gets a bucket of its own)
// and each bucket is one all_reduce, not one per tensor. Buckets are laid out
// once, at construction.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor {

class GradientReducer {
 public:
  // `grads` must stay allocated (the model's Parameter::grad tensors, f32 or
  // f64, all one dtype). comm == nullptr or one rank: reduce() does nothing.
  GradientReducer(std::vector<Tensor> grads, Communicator* comm, int64_t bucket_bytes = 32 << 20);

  // Sums every gradient over the communicator, in place.
  void reduce();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into grads_
    Tensor flat;                  // [sum of numel]
  };
  std::vector<Tensor> grads_;
  Communicator* comm_;
  std::vector<Bucket> buckets_;
};

}  // namespace rotor
