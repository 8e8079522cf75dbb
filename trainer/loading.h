// Models of checkpoints and what the evaluations of a run read, as the
// commands load them: `rotor score`, `rotor eval`, `rotor export-hf` and the
// retrieval grids share these.
//
//   absl::StatusOr<ScoringModel> m = load_scoring_model("runs/base");  // its latest checkpoint
//   absl::StatusOr<ScoreResult> r = score_ids(m->model, ids, false);   // eval/score.h
//
//   absl::StatusOr<LaidOutModel> e = load_laid_out_model(recipe, dir, world.comm(), true);
//   eval::perplexity_by_length(e->model, heldout, run, e->layout.par);   // eval/ppl.h
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/indexed_dataset.h"
#include "data/tokenizer.h"
#include "eval/score.h"
#include "model/llama.h"
#include "parallel/communicator.h"
#include "parallel/context.h"
#include "trainer/recipe/layout.h"
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

// A model in the parallel layout of its recipe (recipe_layout over a
// world), with the checkpoint's step. The layout outlives the model's use of
// it: keep the two together.
struct LaidOutModel {
  RecipeLayout layout;
  LlamaModel model;
  int64_t step = 0;
};
// recipe_layout(recipe, world) + load_eval_model in that layout. Collective
// over `world`. InvalidArgument when the world does not fit the layout.
absl::StatusOr<LaidOutModel> load_laid_out_model(const LoadedRecipe& recipe, const std::string& dir,
                                                 Communicator& world, bool recompute);

// The model of checkpoint directory `dir` built from its own recipe.yaml
// (e.g. a reference to compare a run with), in the layout `par`.
// InvalidArgument when that recipe does not load.
absl::StatusOr<LlamaModel> load_checkpoint_model(const std::string& dir, const ParallelContext& par,
                                                 bool recompute, int64_t& step);

// ------------------------------------------------ evaluations of a recipe's run

// The name of run directory `run_dir` (the eval CSVs' run column): its last
// component ("runs/a" and "runs/a/" -> "a").
std::string run_name(const std::string& run_dir);

// The checkpoint an evaluation of `recipe` reads: `checkpoint` (a checkpoint
// or run directory) when not empty, else the latest checkpoint of run.dir.
// Errors as resolve_checkpoint_dir.
absl::StatusOr<std::string> eval_checkpoint_dir(const LoadedRecipe& recipe, const std::string& checkpoint);

// What an evaluation of checkpoint `dir` of a staged recipe's run uses: the
// recipe of the stage that checkpoint was saved in (its state.json's
// sampler.stage: the RoPE, logit scale and length its weights were trained
// with), or the last stage when the checkpoint names none. A recipe without
// stages is returned as it is. NotFound when the named stage is not the
// recipe's.
absl::StatusOr<LoadedRecipe> checkpoint_stage_recipe(const LoadedRecipe& recipe, const std::string& dir);

// The evaluations' output directory: `out` when not empty, else <run.dir>/eval.
std::string eval_out_dir(const LoadedRecipe& recipe, const std::string& out);

// The recipe's held-out documents (data.heldout). InvalidArgument
// "<recipe>: data.heldout is not set ..." when it is empty, NotFound
// "data.heldout: ..." when it does not open.
absl::StatusOr<std::unique_ptr<IndexedDataset>> open_heldout(const LoadedRecipe& recipe);

// The lengths an evaluation of `recipe` uses by default: eval.lengths, or
// data.sequence_length when that is empty.
std::vector<int64_t> default_eval_lengths(const LoadedRecipe& recipe);

// InvalidArgument "<recipe>: the recipe has no model sizes ..." when its
// model is not fully given (model.init_from without sizes).
absl::Status check_model_sizes(const LoadedRecipe& recipe);

// A recipe one evaluation can take: a single run (no sweep; the sweep's
// errors otherwise) with model sizes (check_model_sizes).
absl::Status check_single_run(const LoadedRecipe& recipe);

// InvalidArgument when `tokenizer` has more ids than the model's vocab_size.
absl::Status check_tokenizer_fits(const Tokenizer& tokenizer, const LoadedRecipe& recipe);

// Where the needle haystack of `recipe` comes from: data.heldout, else the
// first data.datasets entry (training_data: text the model has seen).
// InvalidArgument when the recipe names neither.
struct HaystackSource {
  std::string path;
  bool training_data = false;
};
absl::StatusOr<HaystackSource> needle_haystack_source(const LoadedRecipe& recipe);

// ------------------------------------------------ output under mpirun

// `out` on rank 0 of `comm`, a sink on the other ranks: what a command
// prints once under mpirun.
class RankZeroStream {
 public:
  RankZeroStream(const Communicator& comm, std::ostream& out) : stream_(comm.rank() == 0 ? &out : &discard_) {}
  RankZeroStream(const RankZeroStream&) = delete;
  RankZeroStream& operator=(const RankZeroStream&) = delete;
  std::ostream& get() { return *stream_; }

 private:
  std::ostringstream discard_;
  std::ostream* stream_;
};

}  // namespace rotor
