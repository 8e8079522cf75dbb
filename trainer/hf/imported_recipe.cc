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

// The recipe.yaml of an imported checkpoint (validated by loading it).
absl::StatusOr<std::string> imported_recipe(const HfModel& hf, const std::string& hf_dir,
                                            const std::string& tokenizer, const fs::path& scratch) {
  recipe::Recipe r;
  const LlamaConfig& c = hf.config;
  set_model_section(c, *r.mutable_model());
  set_rope_section(hf.rope, *r.mutable_rope());
  set_logit_scale_section(hf.logit_scale, *r.mutable_logit_scale());
  // Only a tokenizer the directory has: without one the recipe names none.
  if (!tokenizer.empty()) r.mutable_data()->set_tokenizer(tokenizer);
  const fs::path path = scratch / "recipe.yaml";
  ROTOR_RETURN_IF_ERROR(write_text(path, recipe_to_yaml(r)));
  absl::StatusOr<LoadedRecipe> loaded = load_recipe(path.string(), {}, RecipeMode::kModel);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        hf_dir, "/config.json: the model does not make a valid rotor recipe: ", loaded.status().message()));
  }
  return absl::StrCat(
      "# Imported by `rotor import-hf ", hf_dir, "`: model, rope and logit_scale come from its\n",
      "# config.json (data.tokenizer from its tokenizer.model, when it has one), and nothing\n",
      "# else: a training recipe that starts from this checkpoint (model.init_from) names its\n",
      "# own data and train sections.\n",
      recipe_to_yaml(r));
}

}  // namespace rotor
