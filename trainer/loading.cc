#include "trainer/loading.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "trainer/checkpoint.h"

namespace rotor {

namespace fs = std::filesystem;

absl::StatusOr<std::string> resolve_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such directory"));
  }
  if (fs::exists(fs::path(path) / "state.json", ec)) return path;
  absl::StatusOr<std::string> latest = latest_checkpoint(path);
  if (!latest.ok()) return absl::NotFoundError(latest.status().message());
  if (latest->empty()) {
    return absl::NotFoundError(absl::StrCat(
        path, " is neither a checkpoint directory (no state.json) nor a run directory with checkpoints"));
  }
  return *latest;
}

absl::StatusOr<ScoringModel> load_scoring_model(const std::string& path, bool load_weights) {
  absl::StatusOr<std::string> dir = resolve_checkpoint_dir(path);
  if (!dir.ok()) return dir.status();
  const std::string recipe_path = (fs::path(*dir) / "recipe.yaml").string();
  std::error_code ec;
  if (!fs::exists(recipe_path, ec)) {
    return absl::NotFoundError(absl::StrCat(recipe_path, ": missing (not a rotor checkpoint?)"));
  }
  // The resolved recipe the run wrote: model sizes, RoPE and logit scaling.
  // model.init_from (if any) is not followed: the weights are the checkpoint's.
  absl::StatusOr<LoadedRecipe> recipe = load_recipe(recipe_path, {});
  if (!recipe.ok()) return absl::InvalidArgumentError(recipe.status().message());
  if (!recipe->head_dim_known || !recipe->proto.model().has_hidden_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(recipe_path, ": the recipe has no model sizes (model.init_from without sizes)"));
  }
  LlamaOptions options = recipe->model_options();
  options.recompute = true;  // forward only: keep no per-block activations
  absl::StatusOr<LlamaModel> model = LlamaModel::create(recipe->model, options);
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(recipe_path, ": ", model.status().message()));
  }
  ScoringModel m{.dir = *dir, .step = 0, .recipe = *std::move(recipe), .model = *std::move(model)};
  if (load_weights) {
    if (absl::Status s = load_scoring_weights(m); !s.ok()) return s;
  }
  return m;
}

absl::Status load_scoring_weights(ScoringModel& m) {
  absl::StatusOr<CheckpointInfo> info = load_checkpoint(m.dir, m.model.parameters(), nullptr);
  if (!info.ok()) return info.status();
  m.step = info->step;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> checkpoint_tokenizer(const std::string& dir,
                                                                  const LoadedRecipe& recipe) {
  const fs::path spm = fs::path(dir) / "tokenizer.model";
  std::error_code ec;
  const bool has_spm = fs::exists(spm, ec);
  if (!has_spm && !recipe.proto.data().has_tokenizer()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer: ", dir, " has no tokenizer.model and its recipe names no data.tokenizer"));
  }
  const std::string spec =
      has_spm ? absl::StrCat("spm:", spm.string()) : recipe.proto.data().tokenizer();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = make_tokenizer(spec);
  if (!t.ok()) {
    return absl::Status(t.status().code(), absl::StrCat("tokenizer: ", t.status().message()));
  }
  return t;
}

absl::StatusOr<ScoreResult> score_tokens(const std::string& checkpoint_dir,
                                         std::span<const int32_t> ids, bool keep_logits) {
  absl::StatusOr<ScoringModel> m = load_scoring_model(checkpoint_dir);
  if (!m.ok()) return m.status();
  absl::StatusOr<ScoreResult> r = score_ids(m->model, ids, keep_logits);
  if (!r.ok()) return r.status();
  r->checkpoint = m->dir;
  r->step = m->step;
  return r;
}

absl::StatusOr<LlamaModel> load_eval_model(const LoadedRecipe& recipe, const std::string& dir,
                                           const ParallelContext& par, bool recompute, int64_t& step) {
  LlamaOptions o = recipe.model_options();
  o.recompute = recompute;
  o.parallel = par;
  absl::StatusOr<LlamaModel> m = LlamaModel::create(recipe.model, o);
  if (!m.ok()) return absl::InvalidArgumentError(absl::StrCat(recipe.path, ": ", m.status().message()));
  absl::StatusOr<CheckpointInfo> info = load_checkpoint(dir, m->parameters(), nullptr, par.tp_rank());
  if (!info.ok()) return absl::Status(info.status().code(), absl::StrCat(dir, ": ", info.status().message()));
  step = info->step;
  return m;
}

}  // namespace rotor
