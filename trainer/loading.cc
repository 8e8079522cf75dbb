#include "trainer/loading.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"
#include "trainer/checkpoint.h"
#include "trainer/recipe/convert.h"

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
  absl::StatusOr<LoadedRecipe> recipe = load_recipe(recipe_path, {}, RecipeMode::kModel);
  if (!recipe.ok()) return absl::InvalidArgumentError(recipe.status().message());
  ROTOR_RETURN_IF_ERROR(check_model_sizes(*recipe));
  LlamaOptions options = recipe->model_options();
  options.recompute = Recompute::kFull;  // forward only: keep no per-block activations
  absl::StatusOr<LlamaModel> model = LlamaModel::create(recipe->model, options);
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(recipe_path, ": ", model.status().message()));
  }
  ScoringModel m{.dir = *dir, .step = 0, .recipe = *std::move(recipe), .model = *std::move(model)};
  if (load_weights) {
    ROTOR_RETURN_IF_ERROR(load_scoring_weights(m));
  }
  return m;
}

absl::Status load_scoring_weights(ScoringModel& m) {
  ROTOR_ASSIGN_OR_RETURN(CheckpointInfo info, load_checkpoint(m.dir, m.model.parameters(), nullptr));
  m.step = info.step;
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
    return with_context(t.status(), "tokenizer: ");
  }
  return t;
}

absl::StatusOr<ScoreResult> score_tokens(const std::string& checkpoint_dir,
                                         std::span<const int32_t> ids, bool keep_logits) {
  ROTOR_ASSIGN_OR_RETURN(ScoringModel m, load_scoring_model(checkpoint_dir));
  ROTOR_ASSIGN_OR_RETURN(ScoreResult r, score_ids(m.model, ids, keep_logits));
  r.checkpoint = m.dir;
  r.step = m.step;
  return r;
}

absl::StatusOr<LlamaModel> load_eval_model(const LoadedRecipe& recipe, const std::string& dir,
                                           const ParallelContext& par, bool recompute, int64_t& step) {
  LlamaOptions o = recipe.model_options();
  o.recompute = recompute ? Recompute::kFull : Recompute::kNone;
  o.parallel = par;
  ROTOR_ASSIGN_OR_RETURN(o.device, recipe_device(recipe.proto));  // the evaluation recipe's `device`
  absl::StatusOr<LlamaModel> m = LlamaModel::create(recipe.model, o);
  if (!m.ok()) return absl::InvalidArgumentError(absl::StrCat(recipe.path, ": ", m.status().message()));
  absl::StatusOr<CheckpointInfo> info = load_checkpoint(dir, m->parameters(), nullptr, par.tp_rank());
  if (!info.ok()) return with_context(info.status(), absl::StrCat(dir, ": "));
  step = info->step;
  return m;
}

absl::StatusOr<LaidOutModel> load_laid_out_model(const LoadedRecipe& recipe, const std::string& dir,
                                                 Communicator& world, bool recompute) {
  absl::StatusOr<RecipeLayout> layout = recipe_layout(recipe.proto, world);
  if (!layout.ok()) return layout.status();
  int64_t step = 0;
  absl::StatusOr<LlamaModel> model = load_eval_model(recipe, dir, layout->par, recompute, step);
  if (!model.ok()) return model.status();
  return LaidOutModel{.layout = *std::move(layout), .model = *std::move(model), .step = step};
}

absl::StatusOr<LlamaModel> load_checkpoint_model(const std::string& dir, const ParallelContext& par,
                                                 bool recompute, int64_t& step) {
  absl::StatusOr<LoadedRecipe> recipe =
      load_recipe((fs::path(dir) / "recipe.yaml").string(), {}, RecipeMode::kModel);
  if (!recipe.ok()) return absl::InvalidArgumentError(recipe.status().message());
  return load_eval_model(*recipe, dir, par, recompute, step);
}

std::string run_name(const std::string& run_dir) {
  const fs::path p = fs::path(run_dir).lexically_normal();
  const std::string name = p.filename().string();
  return name.empty() ? p.parent_path().filename().string() : name;
}

absl::StatusOr<std::string> eval_checkpoint_dir(const LoadedRecipe& recipe, const std::string& checkpoint) {
  return resolve_checkpoint_dir(checkpoint.empty() ? recipe.proto.run().dir() : checkpoint);
}

absl::StatusOr<LoadedRecipe> checkpoint_stage_recipe(const LoadedRecipe& recipe, const std::string& dir) {
  if (recipe.stages.empty()) return recipe;
  std::string stage = recipe.stages.back().name;
  std::ifstream in(fs::path(dir) / "state.json");
  const nlohmann::json state = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!state.is_discarded() && state.contains("sampler") && state["sampler"].is_object() &&
      state["sampler"].contains("stage") && state["sampler"]["stage"].is_string())
    stage = state["sampler"]["stage"].get<std::string>();
  absl::StatusOr<const LoadedStage*> found = find_stage(recipe, stage);
  if (!found.ok())
    return absl::NotFoundError(absl::StrCat(dir, " was saved in stage '", stage, "' of another recipe: ",
                                            found.status().message()));
  return (*found)->recipe;
}

std::string eval_out_dir(const LoadedRecipe& recipe, const std::string& out) {
  return out.empty() ? (fs::path(recipe.proto.run().dir()) / "eval").string() : out;
}

absl::StatusOr<std::unique_ptr<IndexedDataset>> open_heldout(const LoadedRecipe& recipe) {
  const std::string& heldout = recipe.proto.data().heldout();
  if (heldout.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(recipe.path, ": data.heldout is not set (held-out documents to evaluate on)"));
  }
  absl::StatusOr<IndexedDataset> h = IndexedDataset::open(heldout);
  if (!h.ok()) return absl::NotFoundError(absl::StrCat("data.heldout: ", h.status().message()));
  return std::make_unique<IndexedDataset>(*std::move(h));
}

std::vector<int64_t> default_eval_lengths(const LoadedRecipe& recipe) {
  const auto& lengths = recipe.proto.eval().lengths();
  if (lengths.empty()) return {recipe.proto.data().sequence_length()};
  return std::vector<int64_t>(lengths.begin(), lengths.end());
}

absl::Status check_model_sizes(const LoadedRecipe& recipe) {
  if (!recipe.head_dim_known || !recipe.proto.model().has_hidden_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(recipe.path, ": the recipe has no model sizes (model.init_from without sizes)"));
  }
  return absl::OkStatus();
}

absl::Status check_single_run(const LoadedRecipe& recipe) {
  ROTOR_ASSIGN_OR_RETURN(std::vector<NamedRun> runs, expand_sweep(recipe));
  if (runs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        recipe.path, ": the recipe sweeps ", runs.size(),
        " runs; evaluate one of them (its run directory holds its recipe.yaml)"));
  }
  return check_model_sizes(recipe);
}

absl::Status check_tokenizer_fits(const Tokenizer& tokenizer, const LoadedRecipe& recipe) {
  if (tokenizer.vocab_size() > recipe.model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("the tokenizer (", tokenizer.spec(), ") has ",
                                                   tokenizer.vocab_size(), " ids, more than the model's vocab_size ",
                                                   recipe.model.vocab_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<HaystackSource> needle_haystack_source(const LoadedRecipe& recipe) {
  const recipe::DataSection& data = recipe.proto.data();
  if (!data.heldout().empty()) return HaystackSource{.path = data.heldout(), .training_data = false};
  if (data.datasets_size() == 0) {
    return absl::InvalidArgumentError("needle: the recipe names no data.heldout nor data.datasets");
  }
  return HaystackSource{.path = data.datasets(0).path(), .training_data = true};
}

}  // namespace rotor
