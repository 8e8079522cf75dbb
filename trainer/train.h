// `rotor train RECIPE [--set KEY=VALUE ...]`: the single-process training
// loop on the CPU (parallel layouts and CUDA come with their issues).
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
// object per step: step, loss, lr, grad_norm, tokens_per_s, tflops (model
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
// Non-finite values: a step whose loss or gradient norm is NaN or inf is never
// applied. The event names the step and where the values began (the first
// layer whose output, or first parameter whose gradient, is non-finite);
// train.on_nonfinite chooses stopping (default; the run's checkpoints are all
// finite: save_checkpoint refuses NaN) or skipping the step (metrics.jsonl
// records {"step", "skipped": <the event>}), at most train.max_skipped_steps
// in a row.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "parallel/communicator.h"
#include "trainer/fault_injection.h"
#include "trainer/recipe/recipe.h"

namespace rotor {

// Learning rate at 1-based `step`.
double schedule_lr(const recipe::TrainSection& train, int64_t step);

// Runs (or resumes) the recipe's training over the ranks of `world` (a
// one-rank local communicator without MPI); progress lines go to `out` on
// world rank 0. Parallel layout: parallel.tp x parallel.cp, dp = world / (tp cp)
// (parallel/process_grid.h). Each dp rank takes global_batch / dp sequences of
// every step; the cp ranks of a dp rank share them as zigzag shards
// (ring attention); gradients and losses are summed over dp x cp.
// `faults`: injected failures for the reliability tests (trainer/fault_injection.h).
absl::Status train(const LoadedRecipe& recipe, std::ostream& out, Communicator& world,
                   FaultPlan* faults = nullptr);

}  // namespace rotor
