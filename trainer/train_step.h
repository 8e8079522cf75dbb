// One optimizer step of training, the loop's body (trainer/train.h) and what
// a test that trains a model calls:
//
//   forward_backward  zero_grad, then every micro-batch of this rank forward
//                     and backward, each scaled by 1 / (target tokens counted
//                     over dp x cp), so the summed gradient is that of the
//                     whole global batch's mean token loss; the gradients
//                     summed over dp x cp (parallel/data_parallel.h), each
//                     bucket started during the last micro-batch's backward
//                     once the model reports its gradients final
//   step              forward_backward, the global gradient norm, and, when
//                     the loss and norm are finite, global-norm clipping and
//                     AdamW (or ZeRO-1, trainer/optimizer.h) with the
//                     schedule's learning rate (trainer/schedule.h); a
//                     non-finite step is never applied and its event
//                     (trainer/nonfinite.h) is returned instead
//
// The observer's hooks (trainer/observer.h) run at their points of the step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/adamw.h"
#include "model/llama.h"
#include "parallel/context.h"
#include "parallel/data_parallel.h"
#include "trainer/observer.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.pb.h"
#include "trainer/schedule.h"

namespace rotor {

// The optimizer and its schedule.
struct TrainStepSettings {
  AdamWHyper hyper;      // hyper.lr is the schedule's peak; each step uses schedule.at(step)
  double grad_clip = 0;  // global-norm clipping threshold; 0: none
  LrSchedule schedule;
  bool zero1 = false;    // AdamW moments sharded over dp (ZeRO-1)

  // train.lr, beta1, beta2, weight_decay (eps 1e-8), grad_clip, the schedule
  // (LrSchedule::of) and parallel.zero1.
  static TrainStepSettings of(const recipe::Recipe& r);
};

// One step's outcome, the same on every rank.
struct TrainStepResult {
  int64_t step = 0;
  double lr = 0;         // the schedule's, whether applied or not
  LossSum loss;          // token losses and counted tokens over dp x cp
  double grad_norm = 0;  // before clipping
  std::string nonfinite = {};  // the non-finite event (nonfinite_event) of a step not applied; "" when applied

  bool applied() const { return nonfinite.empty(); }
};

class TrainStep {
 public:
  // `model` and everything `par` and `world` point to outlive this. `par`:
  // the model's parallel layout (ParallelContext{} for one process); `world`:
  // every rank of the run, for locating non-finite values (null: one
  // process); `observer` null: no hooks.
  TrainStep(LlamaModel& model, const TrainStepSettings& settings, const ParallelContext& par = {},
            Communicator* world = nullptr, TrainObserver* observer = nullptr);
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  // Optimizer step `step` (1-based: the schedule's position) on this rank's
  // micro-batches (the same number on every rank). DataLoss when no rank has
  // a counted target token.
  absl::StatusOr<TrainStepResult> step(int64_t step, const std::vector<Batch>& micro_batches);

  // zero_grad, then the forward and backward passes of `micro_batches` and
  // the gradient reduction (above). Returns the loss summed over dp x cp.
  absl::StatusOr<LossSum> forward_backward(int64_t step, const std::vector<Batch>& micro_batches);

  LlamaModel& model() { return model_; }
  Optimizer& optimizer() { return optimizer_; }
  const ParallelContext& parallel() const { return par_; }

 private:
  LlamaModel& model_;
  TrainStepSettings settings_;
  ParallelContext par_;
  Communicator* world_;
  TrainObserver no_observer_;
  TrainObserver* observer_;
  Optimizer optimizer_;
  GradientReducer reducer_;
  // On the model's device: [0] the step's loss sum, [1] the squared norm of
  // tp-sharded gradients, [2] of whole ones (optimizer.h: add_grad_squares).
  Tensor scalars_;

  // forward_backward without reading anything back: the loss sum stays in
  // scalars_[0]. Returns the tokens counted over dp x cp.
  absl::StatusOr<int64_t> accumulate(int64_t step, const std::vector<Batch>& micro_batches);
};

}  // namespace rotor
