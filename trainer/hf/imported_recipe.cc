// The recipe of an imported checkpoint. See imported_recipe.h.
#include "trainer/hf/imported_recipe.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trainer/checkpoint.h"
#include "trainer/recipe/convert.h"
#include "trainer/recipe/recipe.h"
#include "kernels/status.h"

namespace rotor {
namespace fs = std::filesystem;

// The recipe.yaml of an imported checkpoint (resolved, validated by loading it).
absl::StatusOr<std::string> imported_recipe(const HfModel& hf, const std::string& hf_dir,
                                            const std::string& tokenizer, const fs::path& scratch) {
  recipe::Recipe r;
  const LlamaConfig& c = hf.config;
  set_model_section(c, *r.mutable_model());
  set_rope_section(hf.rope, *r.mutable_rope());
  set_logit_scale_section(hf.logit_scale, *r.mutable_logit_scale());
  auto* d = r.mutable_data();
  d->add_datasets()->set_path(absl::StrCat("(imported from ", hf_dir, ")"));
  d->set_sequence_length(c.max_position_embeddings);
  // Only a tokenizer the directory has: without one the recipe names none.
  if (!tokenizer.empty()) d->set_tokenizer(tokenizer);
  auto* t = r.mutable_train();
  t->set_steps(1);
  t->set_lr(1e-5);
  t->set_global_batch_size(1);
  const fs::path path = scratch / "recipe.yaml";
  ROTOR_RETURN_IF_ERROR(write_text(path, recipe_to_yaml(r)));
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
