// Models of checkpoints, as the commands load them: `rotor score`, `rotor
// eval`, `rotor export-hf` and the retrieval grids share these.
//
//   absl::StatusOr<ScoringModel> m = load_scoring_model("runs/base");  // its latest checkpoint
//   absl::StatusOr<ScoreResult> r = score_ids(m->model, ids, false);   // eval/score.h
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "eval/score.h"
#include "model/llama.h"
#include "parallel/context.h"
#include "trainer/recipe/recipe.h"

namespace rotor {

// A checkpoint's model, ready for scoring.
struct ScoringModel {
  std::string dir;      // the checkpoint directory (a run directory resolved to its latest)
  int64_t step = 0;     // its training step
  LoadedRecipe recipe;  // its recipe.yaml
  LlamaModel model;
};

// `path` itself when it holds state.json, else the latest checkpoint of the
// run directory `path`. NotFound when it is neither.
absl::StatusOr<std::string> resolve_checkpoint_dir(const std::string& path);

// Resolves `path`, loads its recipe and builds the model; with
// `load_weights` also loads the weights (verifying checksums), else they stay
// zero (so that inputs can be checked against the vocabulary before the
// expensive load; call load_scoring_weights afterwards).
absl::StatusOr<ScoringModel> load_scoring_model(const std::string& path, bool load_weights = true);
absl::Status load_scoring_weights(ScoringModel& m);

// The tokenizer the checkpoint was trained with: "spm:<dir>/tokenizer.model"
// when that file exists, else the recipe's data.tokenizer; InvalidArgument
// when the recipe names none.
absl::StatusOr<std::unique_ptr<Tokenizer>> checkpoint_tokenizer(const std::string& dir,
                                                                  const LoadedRecipe& recipe);
inline absl::StatusOr<std::unique_ptr<Tokenizer>> checkpoint_tokenizer(const ScoringModel& m) {
  return checkpoint_tokenizer(m.dir, m.recipe);
}

// load_scoring_model + score_ids; sets checkpoint and step.
absl::StatusOr<ScoreResult> score_tokens(const std::string& checkpoint_dir,
                                         std::span<const int32_t> ids, bool keep_logits = false);

// A model of `recipe` in the layout `par` with the weights of checkpoint
// `dir` (this rank's tp shard; checksums verified). `step` gets its step.
absl::StatusOr<LlamaModel> load_eval_model(const LoadedRecipe& recipe, const std::string& dir,
                                           const ParallelContext& par, bool recompute, int64_t& step);

}  // namespace rotor
