// Training checkpoints: everything needed to continue a run exactly.
//
//   <run_dir>/checkpoints/step_<8 digits>/
//     model.safetensors      parameters (HF names, f32 master weights)
//     optimizer.safetensors  "m.<name>", "v.<name>": AdamW moments
//     recipe.yaml            the resolved recipe the run used
//     tokenizer.model        the SentencePiece model of data.tokenizer (spm: only),
//                            so the checkpoint scores text on its own
//     state.json             {"step", "optimizer_steps", "sampler": {...},
//                             "files": {name: {"bytes", "crc32"}}}; a staged
//                             run's sampler names the stage: {"stage",
//                             "stage_index", "stage_step", "next_sample"}
//                             (next_sample: of the stage's stream), and its
//                             recipe.yaml is the stage's recipe (the rope and
//                             length the weights were trained with)
//   <run_dir>/checkpoints/latest   name of the newest complete checkpoint
//
// A checkpoint is written into "step_<N>.tmp-<pid>" and renamed into place
// only when every file is written and fsynced; `latest` is then replaced
// atomically (and the directory synced). A kill at any point leaves the
// previous checkpoint intact and at most a stale .tmp directory (removed by
// the next save); a failed write (disk full) removes its .tmp directory and
// returns an error naming the file, the previous checkpoints untouched.
// Weights or moments holding NaN or inf are refused. Loading checks every
// file's size and CRC-32 against state.json, so a truncated or corrupted file
// is an error naming it, never silently wrong weights; `rotor train` then
// resumes from the newest checkpoint that verifies (resume_candidates).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/llama.h"
#include "trainer/optimizer.h"
#include "trainer/safetensors.h"

namespace rotor {

struct CheckpointInfo {
  int64_t step = 0;
  nlohmann::json sampler;  // data sampler position (opaque to this layer)
  std::string recipe_yaml;
  // Files copied into the checkpoint (and checksummed): name there -> source path.
  std::map<std::string, std::string> extra_files = {};
  std::string dir = {};    // the checkpoint directory (set by load_checkpoint)
  // Called during save_checkpoint after each stage of the write (1: model,
  // 2: optimizer, 3: every file written and synced, 4: renamed into place,
  // `latest` not yet updated); for fault injection (trainer/fault_injection.h).
  std::function<void(int)> after_stage = {};
};

// What a checkpoint stores: whole tensors (global shapes, whatever the
// parallel layout that trained them), by HF name; moments as "m.<name>",
// "v.<name>".
struct CheckpointTensors {
  std::vector<NamedTensor> model, optimizer;
  int64_t optimizer_steps = 0;
};

// The tensors of a one-process model and optimizer (no copies). With tensor
// parallelism every tp rank calls it with `tp`: the shards are gathered into
// whole tensors (parallel/tensor_parallel.h), collectively.
CheckpointTensors checkpoint_tensors(const std::vector<Parameter>& params,
                                     const AdamWOptimizer& optimizer, Communicator* tp = nullptr);

// Writes `text` to `path` (truncating), flushed; an error names the path.
absl::Status write_text(const std::filesystem::path& path, const std::string& text);

// Saves step `info.step`, then deletes the oldest complete checkpoints so
// that at most `keep` remain (keep <= 0: keep all).
absl::Status save_checkpoint(const std::string& run_dir, const CheckpointInfo& info,
                             const CheckpointTensors& tensors, int keep);
absl::Status save_checkpoint(const std::string& run_dir, const CheckpointInfo& info,
                             const std::vector<Parameter>& params,
                             const AdamWOptimizer& optimizer, int keep);

// Every complete checkpoint directory of the run (step_<N>, renamed into
// place, so all its files were written and synced), newest first: what a
// resume tries in turn when the newest fails verification. It may be newer
// than `latest` (a save killed between its rename and the update of latest).
std::vector<std::string> resume_candidates(const std::string& run_dir);

// <run_dir>/checkpoints/step_<8 digits>, the directory of step `step`.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

// The step of a checkpoint directory named step_<N> (any parent), or -1.
int64_t checkpoint_dir_step(const std::string& dir);

// The directory named by <run_dir>/checkpoints/latest, or "" when the run has
// no checkpoint yet.
absl::StatusOr<std::string> latest_checkpoint(const std::string& run_dir);

// Verifies checksums, then loads parameters (matched by name and global
// shape) and, if `optimizer` is non-null, its moments and step count. A
// parameter that is a tensor-parallel shard (Parameter::shard_dim) takes rank
// `tp_rank`'s part of the stored whole tensor. Returns the step, sampler
// state and recipe.
absl::StatusOr<CheckpointInfo> load_checkpoint(const std::string& dir,
                                               std::vector<Parameter>& params,
                                               AdamWOptimizer* optimizer, int tp_rank = 0);

}  // namespace rotor
