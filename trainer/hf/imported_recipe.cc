// The recipe of an imported checkpoint. See imported_recipe.h.
#include "trainer/hf/imported_recipe.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trainer/checkpoint.h"
#include "trainer/recipe/recipe.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

void set_rope_section(const RopeConfig& r, recipe::RopeSection& s) {
  s.set_method(rope_method_name(r.method));
  s.set_theta(r.theta);
  if (r.method == RopeMethod::kNone) return;
  s.set_factor(r.factor);
  if (r.original_max_position > 0) s.set_original_max_position(r.original_max_position);
  if (r.method == RopeMethod::kYarn) {
    s.set_beta_fast(r.beta_fast);
    s.set_beta_slow(r.beta_slow);
    s.set_truncate(r.truncate);
  }
  if (r.method == RopeMethod::kLlama3) {
    s.set_low_freq_factor(r.low_freq_factor);
    s.set_high_freq_factor(r.high_freq_factor);
  }
  if (r.method == RopeMethod::kLongRope) {
    for (double v : r.short_factor) s.add_short_factor(v);
    for (double v : r.long_factor) s.add_long_factor(v);
  }
  if (r.attention_factor) s.set_attention_factor(*r.attention_factor);
}

void set_logit_scale_section(const LogitScaleConfig& l, recipe::LogitScaleSection& s) {
  s.set_kind(logit_scale_kind_name(l.kind));
  if (l.kind == LogitScaleKind::kNone) return;
  if (l.kind == LogitScaleKind::kConstant) s.set_value(l.value);
  if (l.kind == LogitScaleKind::kLogPosition) {
    s.set_base_length(l.base_length);
    s.set_min(l.min);
  }
  for (int64_t layer : l.skip_layers) s.add_skip_layers(layer);
}

}  // namespace

// The recipe.yaml of an imported checkpoint (resolved, validated by loading it).
absl::StatusOr<std::string> imported_recipe(const HfModel& hf, const std::string& hf_dir,
                                            const std::string& tokenizer, const fs::path& scratch) {
  recipe::Recipe r;
  auto* m = r.mutable_model();
  const LlamaConfig& c = hf.config;
  m->set_vocab_size(c.vocab_size);
  m->set_hidden_size(c.hidden_size);
  m->set_intermediate_size(c.intermediate_size);
  m->set_num_hidden_layers(c.num_hidden_layers);
  m->set_num_attention_heads(c.num_attention_heads);
  m->set_num_key_value_heads(c.num_key_value_heads);
  m->set_head_dim(c.resolved_head_dim());
  m->set_rms_norm_eps(c.rms_norm_eps);
  m->set_max_position_embeddings(c.max_position_embeddings);
  m->set_tie_word_embeddings(c.tie_word_embeddings);
  m->set_initializer_range(c.initializer_range);
  set_rope_section(hf.rope, *r.mutable_rope());
  set_logit_scale_section(hf.logit_scale, *r.mutable_logit_scale());
  auto* d = r.mutable_data();
  d->add_datasets()->set_path(absl::StrCat("(imported from ", hf_dir, ")"));
  d->set_sequence_length(c.max_position_embeddings);
  if (!tokenizer.empty()) d->set_tokenizer(tokenizer);
  auto* t = r.mutable_train();
  t->set_steps(1);
  t->set_lr(1e-5);
  t->set_global_batch_size(1);
  const fs::path path = scratch / "recipe.yaml";
  if (absl::Status s = write_text(path, recipe_to_yaml(r)); !s.ok()) return s;
  absl::StatusOr<LoadedRecipe> loaded = load_recipe(path.string(), {});
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        hf_dir, "/config.json: the model does not make a valid rotor recipe: ", loaded.status().message()));
  }
  return absl::StrCat(
      "# Imported by `rotor import-hf ", hf_dir, "`: model, rope and logit_scale come from its\n",
      "# config.json. data and train are PLACEHOLDERS that only make this recipe loadable\n",
      "# (scoring and model.init_from use the model sections alone).\n",
      recipe_to_yaml(loaded->proto));
}

}  // namespace rotor
