// AdamW over a model's parameters with global-norm gradient clipping.
// AdamWOptimizer holds the first and second moments (f32, same shapes as the
// parameters); the parameters themselves are the fp32 master weights on the
// CPU. Optimizer, the trainer's, is either an AdamWOptimizer on every rank or
// the same update with the moments sharded over dp (ZeRO-1, parallel/zero.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/adamw.h"
#include "model/llama.h"
#include "parallel/zero.h"

namespace rotor {

struct OptimizerStepInfo {
  double grad_norm = 0;    // global L2 norm before clipping
  double clip_scale = 1;   // factor applied to the gradients
};

// The L2 norm of all gradients of the model (over the tp shards, see step()).
// Adds the squared gradient norms of `params` to acc ([2] f64 on their
// device), on the device: acc[0] += those of tensor-parallel shards (each
// divided by its replicas, which hold the same shard), acc[1] += those of
// tensors every tp rank holds whole. The global norm is then
// sqrt(acc[0] + acc[1]) once acc[0] is summed over tp, which this does too
// (tp null or one rank: nothing to sum).
void add_grad_squares(const std::vector<Parameter>& params, const Tensor& acc, Communicator* tp);
double global_grad_norm(const std::vector<Parameter>& params, Communicator* tp = nullptr);

class AdamWOptimizer {
 public:
  AdamWOptimizer(const std::vector<Parameter>& params, const AdamWHyper& hyper);

  // One step with learning rate `lr` (the schedule's value). Gradients are
  // scaled by min(1, grad_clip / norm) when grad_clip > 0. Parameters whose
  // tensor is 1-D (norm weights) get no weight decay, as in Megatron/torchtitan.
  // With tensor parallelism pass the tp communicator: the global norm then sums
  // the squares of the sharded parameters (Parameter::shard_dim >= 0) over tp
  // and counts the whole (replicated) ones once.
  OptimizerStepInfo step(std::vector<Parameter>& params, double lr, double grad_clip,
                         Communicator* tp = nullptr);
  // The same step given global_grad_norm(params, tp) computed already (the
  // trainer checks it for NaN before stepping).
  OptimizerStepInfo step_with_norm(std::vector<Parameter>& params, double lr, double grad_clip,
                                   double grad_norm);

  int64_t steps_taken() const { return step_; }
  const AdamWHyper& hyper() const { return hyper_; }

  // State for checkpoints: first and second moments of parameter i (same
  // order as the parameter list), and the step count used for bias correction.
  const Tensor& first_moment(size_t i) const { return m_.at(i); }
  const Tensor& second_moment(size_t i) const { return v_.at(i); }
  void restore_steps_taken(int64_t steps) { step_ = steps; }

 private:
  AdamWHyper hyper_;
  int64_t step_ = 0;
  std::vector<Tensor> m_, v_;
};

struct CheckpointTensors;  // trainer/checkpoint.h
struct CheckpointInfo;

// AdamW, either whole on every rank (AdamWOptimizer) or with its moments
// sharded over dp (ZeRO-1, parallel/zero.h, recipe parallel.zero1). Both give
// the same parameters; checkpoints hold the whole moments either way.
class Optimizer {
 public:
  // ZeRO-1 when `zero_dp` has more than one rank.
  Optimizer(const std::vector<Parameter>& params, const AdamWHyper& hyper, Communicator* zero_dp);

  // `grad_norm`: global_grad_norm(params, tp), computed once by the caller.
  OptimizerStepInfo step(std::vector<Parameter>& params, double lr, double clip, double grad_norm);

  // The checkpoint's tensors (trainer/checkpoint.h's checkpoint_tensors).
  // Collective: tp gathers; ZeRO-1 also gathers the moments over dp.
  CheckpointTensors checkpoint_tensors(const std::vector<Parameter>& params, Communicator* tp) const;

  // load_checkpoint of `dir` into the parameters and this optimizer's state
  // (ZeRO-1 keeps its range of the whole moments).
  absl::StatusOr<CheckpointInfo> load(const std::string& dir, std::vector<Parameter>& params, int tp_rank);

 private:
  AdamWHyper hyper_;
  std::optional<AdamWOptimizer> adam_;
  std::optional<ShardedAdamW> zero_;
};

}  // namespace rotor
