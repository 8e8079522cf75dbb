// What a run reports, written by world rank 0 (the other ranks compute the
// same numbers and write nothing):
//
//   metrics.jsonl  one JSON object per step: step, sequence_length, stage
//                  (staged recipes only: the stage's name), lr, tokens_per_s, tflops
//                  (model FLOPs per second per rank,
//                  LlamaConfig::training_flops_per_token), mfu (with
//                  run.peak_tflops), then loss and grad_norm, or for a skipped
//                  step "skipped": the non-finite event; when evaluated,
//                  eval_loss_<length>, eval_entropy_<length> (mean attention
//                  entropy over layers, heads and held-out rows) and
//                  eval_entropy_<longest length>_layer<l>. A resumed run first
//                  drops the records after its checkpoint's step (it logs
//                  those steps again).
//   tb/            TensorBoard events (trainer/tensorboard.h), one events file
//                  per (re)start: the record's numbers as train/<key> and
//                  eval/<key without "eval_">.
//   progress       "step S/N [| stage NAME] | loss L | lr R | grad norm G | T tok/s
//                  | F TFLOP/s [| MFU M%] | ETA 1m02s [| eval@<length> E ...]" for
//                  the first step of the (re)start and of each stage, the last,
//                  every run.log_interval-th and every evaluated one; "step S/N
//                  | skipped: <event>" for a skipped step. The ETA is the
//                  current stage's pace times the run's remaining steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/heldout.h"
#include "model/config.h"
#include "trainer/recipe/recipe.pb.h"
#include "trainer/tensorboard.h"
#include "trainer/train_step.h"

namespace rotor {

struct MetricsSettings {
  std::string run_dir = {};
  int64_t steps = 0;             // train.steps
  int64_t tokens_per_step = 0;   // global batch x sequence length
  double flops_per_token = 0;    // LlamaConfig::training_flops_per_token
  double peak_tflops = 0;        // run.peak_tflops; 0: no MFU (none is assumed on the CPU)
  int64_t log_every = 1;         // run.log_interval
  int world_size = 1;            // tflops are per rank
  std::vector<int64_t> eval_lengths = {};  // eval.lengths, the progress line's order
  int64_t sequence_length = 0;   // data.sequence_length
  std::string stage = {};        // the stage's name; "" without stages

  static MetricsSettings of(const recipe::Recipe& r, const LlamaConfig& model, int64_t tokens_per_step,
                            int world_size);
};

// The held-out evaluations of one step, by length (eval.lengths' order).
using StepEvals = std::vector<std::pair<int64_t, HeldoutEval>>;

// Keeps the records of metrics.jsonl at `path` with step <= `last_step`,
// through a temporary file and a rename (a kill keeps every record). No file:
// nothing to do.
absl::Status truncate_metrics(const std::string& path, int64_t last_step);

class Metrics {
 public:
  // Rank 0 (`rank0`) truncates metrics.jsonl after `start_step` when
  // `resumed`, opens it for appending and opens a new TensorBoard events file;
  // progress lines go to `out` (rank 0's; the others pass a discarding
  // stream). `start_step`: the last step before this (re)start.
  static absl::StatusOr<Metrics> open(const MetricsSettings& settings, bool rank0, std::ostream& out,
                                      int64_t start_step, bool resumed);

  // From here on the steps are a (new) stage's: its settings (`steps`: the
  // run's); `last_step`: the step before its first.
  void begin_stage(const MetricsSettings& settings, int64_t last_step);

  // The step's clock: begin_step at its start (after the observer's
  // at_step_start), end_step after the optimizer update, before evaluation.
  void begin_step();
  void end_step();

  // The progress line of a skipped step.
  void report_skipped(const TrainStepResult& result);

  // The step's record, TensorBoard scalars and progress line. `evaluated`:
  // the step ran the held-out evaluation (its results `evals`).
  absl::Status log(const TrainStepResult& result, bool evaluated, const StepEvals& evals);

 private:
  using Clock = std::chrono::steady_clock;
  Metrics(const MetricsSettings& settings, bool rank0, std::ostream& out, int64_t start_step)
      : settings_(settings), rank0_(rank0), out_(&out), pace_from_(start_step) {}

  MetricsSettings settings_;
  bool rank0_;
  std::ostream* out_;
  int64_t pace_from_;  // the step before the current stage's first logged one (ETA, first line)
  std::ofstream jsonl_;                  // rank 0 only
  std::optional<TensorBoardWriter> tb_;  // rank 0 only
  Clock::time_point t0_ = Clock::now(), step_start_ = t0_;
  double step_seconds_ = 0, elapsed_seconds_ = 0;
};

}  // namespace rotor
