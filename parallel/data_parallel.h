// Data parallel: summing gradients over the ranks that hold the same
// parameters and different tokens (ParallelContext::dp_cp: the dp replicas and,
// inside each, the cp ranks, whose shards of a sequence give partial sums).
//
// Math. Rank r's backward leaves g_p^(r) = sum over its tokens t of
// d loss_t / d p, scaled by 1 / N with N the target tokens counted over every
// rank (the trainer does the scaling). The reducer makes, on every rank,
//
//   g_p <- sum_{r in dp_cp} g_p^(r)
//
// the gradient of the global mean token loss, the same as one process running
// the whole global batch (up to the order of the fp sums). Nothing is divided
// here.
//
// Buckets. The gradients are packed into flat buffers of at most
// `bucket_bytes` (a parameter larger than that gets a bucket of its own), one
// all_reduce per bucket, not one per tensor. Buckets are laid out once, at
// construction, in *reverse* parameter order: bucket 0 starts with the last
// parameter, and inside a bucket the parameters follow that reverse order.
// Backward produces gradients in roughly that order (the head and final norm
// first, then the blocks from the last to the first, the embedding last), so
// the first buckets fill first. The layout is a function of the gradients'
// sizes alone, the same on every rank of dp_cp (they hold the same shards).
//
// Overlap (Megatron-core DistributedDataParallel style). During the backward
// of a step's last micro-batch the model reports each parameter whose
// gradient is final (LlamaModel::set_gradient_ready) and the caller passes it
// to ready(i). When every member of bucket b is ready, the bucket is packed and
// its iall_reduce started, while backward goes on computing the earlier
// layers. finish() starts the buckets not started yet, waits for every
// request, and copies the sums back into the gradients.
//
// Order. Collectives of a group must be started in the same order on every
// rank, so buckets are started strictly in index order: a complete bucket b
// starts once buckets 0..b-1 have started (in practice at once, since readiness
// follows the layout). The launch order therefore never depends on the order
// in which ready() is called, only the moment of each launch does.
//
// Results. Each bucket is summed by one all_reduce of the same buffer whether
// it is started from ready() or from finish(), so reduce() (every gradient
// ready at once, then finish) and the overlapped path give identical bits.
//
//   GradientReducer reducer(grads, par.dp_cp);
//   model.set_gradient_ready([&](size_t i) { reducer.ready(i); });  // last micro-batch
//   model.forward_backward(batch, scale);
//   model.set_gradient_ready(nullptr);
//   reducer.finish();                // gradients summed; ready for the next step
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/communicator.h"

namespace rotor {

class GradientReducer {
 public:
  // `grads` must stay allocated (the model's Parameter::grad tensors, f32 or
  // f64, all one dtype). comm == nullptr or one rank: no buckets, and ready(),
  // finish() and reduce() do nothing.
  // Destroying a reducer with buckets in flight waits for them (the requests'
  // destructors); their sums are then not unpacked.
  GradientReducer(std::vector<Tensor> grads, Communicator* comm, int64_t bucket_bytes = 32 << 20);

  // Gradient `param_index` (an index into `grads`) is final for this step: no
  // later work of the step adds to it. Once per parameter per step (a second
  // call is a CHECK failure). Starts the bucket if it is now complete (and any
  // complete buckets after it, in order).
  void ready(size_t param_index);

  // Starts the buckets not started yet, waits for all, unpacks the sums into
  // the gradients; then the next step begins (no parameter ready).
  void finish();

  // The one-shot path: every gradient ready, then finish().
  void reduce();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets whose all_reduce has been started in this step.
  int64_t launched() const { return next_launch_; }
  // The bucket holding gradient `param_index`.
  int64_t bucket_of(size_t param_index) const;

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into grads_, in reverse parameter order
    Tensor flat;                  // [sum of numel]
    size_t waiting = 0;           // members not ready yet in this step
    std::unique_ptr<CommRequest> request;
  };
  // Starts every complete bucket from next_launch_ on, in index order.
  void launch_ready_buckets();

  std::vector<Tensor> grads_;
  Communicator* comm_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_of_;   // per gradient
  std::vector<bool> is_ready_;       // per gradient, this step
  int64_t next_launch_ = 0;          // buckets [0, next_launch_) started this step
};

}  // namespace rotor
