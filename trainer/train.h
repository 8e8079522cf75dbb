// `rotor train RECIPE [--set KEY=VALUE ...]`: training on the CPU, on one
// process or over MPI ranks in any tp x cp x dp layout of the recipe.
//
// Per step: the global batch (train.global_batch_tokens / sequence_length or
// train.global_batch_size sequences) is cut into micro-batches of
// train.micro_batch_size; the loss is the sum of token losses over the whole
// global batch divided by its counted-token total, so gradient accumulation
// gives the same gradient as one big batch. Then global-norm clipping and
// AdamW with the schedule's learning rate (linear warmup from 0, then cosine,
// linear or constant down to train.min_lr at train.steps).
//
// Data: each dataset of data.datasets is packed and shuffled (data/packing.h)
// and the datasets are blended in exact proportion to their weights
// (data/blend.h, Megatron's scheme), so sample i of the run is a function of
// (recipe, i) and resuming needs only the step.
//
// Run directory (run.dir): recipe.yaml (resolved), metrics.jsonl (one JSON
// object per step: step, sequence_length, stage (staged recipes), loss, lr,
// grad_norm, tokens_per_s, tflops (model
// FLOPs, LlamaConfig::training_flops_per_token), mfu (with run.peak_tflops),
// and, when evaluated, eval_loss_<length>, eval_entropy_<length> (mean
// attention entropy over layers, heads and held-out rows) and
// eval_entropy_<longest length>_layer<l>), tb/ (TensorBoard events: the same
// numbers as train/<key> and eval/loss_<length>), checkpoints/
// (trainer/checkpoint.h).
// If the run directory holds a checkpoint, training continues from the newest
// one that verifies (trainer/checkpoint.h); a corrupt one is reported by name
// and the previous one used.
//
// Stages (a recipe's `stages:`, trainer/recipe/recipe.h): the run's steps are
// the stages' in order. Each stage builds its own pieces from its recipe
// (layout, model, data stream continuing the earlier stages' datasets
// (trainer/data_stream.h), TrainStep with the stage's schedule counted from
// its first step, checkpointer, non-finite policy); its last step always
// saves a checkpoint, and the next stage starts by loading it (weights, AdamW
// moments and step count), which is what a resume at the boundary does too.
// Resume picks the stage of the step after the newest checkpoint. Every
// stage's layout is checked against the world size before training starts.
// A recipe without stages is one stage, named "".
//
// Non-finite values: a step whose loss or gradient norm is NaN or inf is never
// applied. The event names the step and where the values began (the first
// layer whose output, or first parameter whose gradient, is non-finite);
// train.on_nonfinite chooses stopping (default; the run's checkpoints are all
// finite: save_checkpoint refuses NaN) or skipping the step (metrics.jsonl
// records {"step", "skipped": <the event>}), at most train.max_skipped_steps
// in a row.
//
// Structure (in the order train() uses the pieces):
//   trainer/recipe/layout.h   recipe_layout: the process grid and ParallelContext
//   trainer/data_stream.h     open_stream, step_batches: the blended stream,
//                             each step's micro-batches for this rank
//   trainer/train_step.h      TrainStep: one optimizer step (forward_backward
//                             over the micro-batches, gradient reduction,
//                             clipping, AdamW or ZeRO-1 (trainer/optimizer.h)
//                             with the learning rate of trainer/schedule.h)
//   trainer/checkpointer.h    Checkpointer: resume or model.init_from at the
//                             start, the periodic save after a step
//   trainer/metrics.h         Metrics: metrics.jsonl, TensorBoard, progress lines
//   trainer/nonfinite.h       NonfinitePolicy: stop or skip after a non-finite step
//   trainer/observer.h        TrainObserver: hooks at fixed points of a step
//                             (trainer/fault_injection.h's FaultPlan)
// train() builds them, then iterates over the steps: the observer's
// at_step_start, the step's batches, TrainStep::step, the non-finite policy,
// the held-out evaluation when due (eval/heldout.h), the logs, the checkpoint
// when due.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "parallel/communicator.h"
#include "trainer/observer.h"
#include "trainer/recipe/recipe.h"

namespace rotor {

// Runs (or resumes) the recipe's training over the ranks of `world` (a
// one-rank local communicator without MPI); progress lines go to `out` on
// world rank 0. Parallel layout: parallel.tp x parallel.cp, dp = world / (tp cp)
// (parallel/process_grid.h). Each dp rank takes global_batch / dp sequences of
// every step; the cp ranks of a dp rank share them as zigzag shards
// (ring attention); gradients and losses are summed over dp x cp.
// `observer`: hooks into each step, e.g. injected failures for the
// reliability tests (trainer/fault_injection.h); null: none.
absl::Status train(const LoadedRecipe& recipe, std::ostream& out, Communicator& world,
                   TrainObserver* observer = nullptr);

}  // namespace rotor
