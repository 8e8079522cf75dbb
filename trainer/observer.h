// Hooks into the training loop at fixed points of each step, for whoever
// watches or perturbs a run from outside it: trainer/fault_injection.h's
// FaultPlan implements them for the reliability tests. Every hook does nothing
// by default; a run without an observer uses that default.
//
// Order within step S (trainer/train.h):
//   at_step_start(S, world rank)   before the step's data is read; an error ends the run
//   before_forward(S, model)       after zero_grad, before the first micro-batch
//   after_backward(S, model)       after the gradients are summed over dp x cp
//   before_update(S, model)        after the gradient norm and any diagnosis of
//                                  non-finite values, before the optimizer update
//                                  (or the skip)
//   at_checkpoint_stage(S, stage)  on the writing rank, during the checkpoint of
//                                  step S, after each stage of the write
//                                  (trainer/checkpoint.h's CheckpointInfo::after_stage)
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "model/llama.h"

namespace rotor {

class TrainObserver {
 public:
  virtual ~TrainObserver() = default;

  virtual absl::Status at_step_start(int64_t /*step*/, int /*world_rank*/) { return absl::OkStatus(); }
  virtual void before_forward(int64_t /*step*/, LlamaModel& /*model*/) {}
  virtual void after_backward(int64_t /*step*/, LlamaModel& /*model*/) {}
  virtual void before_update(int64_t /*step*/, LlamaModel& /*model*/) {}
  virtual void at_checkpoint_stage(int64_t /*step*/, int /*stage*/) {}
};

}  // namespace rotor
