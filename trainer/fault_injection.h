// Fault injection for the reliability tests: the failures a long run meets
// (a process killed during a step or in the middle of a checkpoint write, a
// rank that fails, a non-finite activation or gradient) made to happen at a
// chosen step, in the shipped binary, so tests exercise the real code paths.
// A FaultPlan is the training loop's observer (trainer/observer.h): its hooks
// are where the faults happen.
//
// A plan comes from the environment variable ROTOR_FAULT (read by
// `rotor train` only; unset or empty: no faults, and every hook is a no-op):
//
//   ROTOR_FAULT="FAULT[;FAULT...]"   FAULT = KIND:step=S[,rank=R][,layer=L][,stage=N]
//
//   kill            SIGKILL of rank R (default 0) at the start of step S
//   fail            rank R returns an error at the start of step S ("injected
//                   failure"), the path of a rank that hits a real error
//   kill_checkpoint SIGKILL of the writing rank during the checkpoint of step S,
//                   after stage N (1..4) of trainer/checkpoint.h's write:
//                   1 model.safetensors, 2 optimizer.safetensors, 3 state.json
//                   written (not yet renamed), 4 renamed (latest not yet updated)
//   nan_activation  layer L's input_layernorm weight is NaN during step S only
//                   (restored afterwards): non-finite activations from layer L on
//   nan_grad        one gradient element of layer L is NaN after step S's backward
//
// A malformed value is an error naming ROTOR_FAULT and the part that is wrong.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "model/llama.h"
#include "trainer/observer.h"

namespace rotor {

struct Fault {
  enum Kind { kKill, kFail, kKillCheckpoint, kNanActivation, kNanGrad };
  Kind kind = kKill;
  int64_t step = 0;
  int rank = 0;
  int64_t layer = 0;
  int stage = 0;
};

class FaultPlan : public TrainObserver {
 public:
  FaultPlan() = default;
  // Parses ROTOR_FAULT's syntax (above).
  static absl::StatusOr<FaultPlan> parse(const std::string& spec);
  // The plan of the environment's ROTOR_FAULT (none when unset).
  static absl::StatusOr<FaultPlan> from_env();

  bool empty() const { return faults_.empty(); }

  // At the start of `step` on world rank `rank`: kills the process or returns
  // the injected error.
  absl::Status at_step_start(int64_t step, int rank) override;
  // Before the forward passes of `step`: poisons the weights named by
  // nan_activation faults; before_update (after any diagnosis of the
  // non-finite values) puts them back through restore_weights().
  void before_forward(int64_t step, LlamaModel& model) override;
  void before_update(int64_t step, LlamaModel& model) override;
  void restore_weights();
  // After the gradient reduction of `step`: the nan_grad faults.
  void after_backward(int64_t step, LlamaModel& model) override;
  // During the checkpoint write of `step`, after `stage` (see above).
  void at_checkpoint_stage(int64_t step, int stage) override;

 private:
  std::vector<Fault> faults_;
  std::vector<std::pair<Parameter*, Tensor>> saved_;  // weights poisoned this step
};

}  // namespace rotor
