// Non-finite values in training: a step whose loss or gradient norm is NaN or
// inf is never applied (TrainStep, trainer/train_step.h). The event names the
// step and where the values began (nonfinite_event); the recipe's
// train.on_nonfinite chooses what the run does next (NonfinitePolicy):
// stopping (the default; the run's checkpoints are all finite: save_checkpoint
// refuses NaN) or skipping the step, at most train.max_skipped_steps in a row.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/llama.h"
#include "parallel/communicator.h"
#include "trainer/recipe/recipe.pb.h"

namespace rotor {

// Where a non-finite loss or gradient came from, for the log, over every
// rank: the first point of the residual stream whose activations hold NaN or
// inf (found by running the step's micro-batches `batches` forward again);
// when the forward pass is finite, the parameter whose gradient went
// non-finite first in backward order (the highest layer: below it the NaN has
// spread); and the first weight holding NaN or inf, if any. Collective over
// `world` (every rank of the run; null: one process); the forward passes are
// collective over tp and cp too.
std::string locate_nonfinite(LlamaModel& model, const std::vector<Batch>& batches, Communicator* world);

// "step S: non-finite [loss (L) and ]gradient norm (G); <locate_nonfinite>"
// when the loss mean or the gradient norm is NaN or inf, else "" (no call to
// locate_nonfinite, so nothing collective). The loss and norm are the same on
// every rank, so every rank takes the same branch.
std::string nonfinite_event(int64_t step, double loss, double grad_norm, LlamaModel& model,
                            const std::vector<Batch>& batches, Communicator* world);

// What the run does after a step: train.on_nonfinite (stop | skip) and
// train.max_skipped_steps.
class NonfinitePolicy {
 public:
  NonfinitePolicy(bool skip, int64_t max_skipped_in_row) : skip_(skip), max_skips_(max_skipped_in_row) {}
  static NonfinitePolicy of(const recipe::TrainSection& train);

  // After a step whose non-finite event is `event` ("" when the step was
  // applied): OK to go on, or the DataLoss error that ends the run ("<event>;
  // stopping (train.on_nonfinite: stop)", or "<event>; stopping: N steps in a
  // row skipped (train.max_skipped_steps: M)").
  absl::Status after_step(const std::string& event);

 private:
  bool skip_;
  int64_t max_skips_;
  int64_t skipped_in_row_ = 0;
};

}  // namespace rotor
