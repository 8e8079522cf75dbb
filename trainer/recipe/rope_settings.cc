// `rotor rope`'s view of a recipe (loaded by load_recipe) -> JSON. See rope_settings.h.
#include "trainer/recipe/rope_settings.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/recipe/recipe.h"
#include "kernels/status.h"

namespace rotor {

std::vector<std::string> rope_setting_keys() {
  std::vector<std::string> keys = {"model.head_dim"};
  for (const auto& k : recipe_internal::field_keys(recipe::RopeSection::descriptor(), "rope"))
    keys.push_back(k);
  for (const auto& k :
       recipe_internal::field_keys(recipe::LogitScaleSection::descriptor(), "logit_scale"))
    keys.push_back(k);
  return keys;
}

absl::StatusOr<RopeSettings> load_rope_settings(const std::string& recipe_path,
                                                const std::vector<std::string>& overrides,
                                                const std::string& stage) {
  ROTOR_ASSIGN_OR_RETURN(LoadedRecipe loaded, load_recipe(recipe_path, overrides, RecipeMode::kRope));
  const LoadedRecipe* r = &loaded;
  if (!stage.empty()) {
    ROTOR_ASSIGN_OR_RETURN(const LoadedStage* s, find_stage(loaded, stage));
    r = &s->recipe;
  } else if (!loaded.stages.empty()) {
    std::vector<std::string> names;
    for (const LoadedStage& s : loaded.stages) names.push_back(s.name);
    return absl::InvalidArgumentError(absl::StrCat(recipe_path, " has stages (", absl::StrJoin(names, ", "),
                                                   "), each with its own RoPE: name one with --stage NAME"));
  }
  RopeSettings s;
  s.head_dim = r->proto.model().head_dim();
  s.rope = r->rope;
  s.logit_scale = r->logit_scale;
  return s;
}

std::vector<int64_t> default_rope_positions() {
  return {0, 1023, 2047, 4095, 8191, 16383, 32767, 65535, 131071};
}

int64_t default_rope_layers(const LogitScaleConfig& scale) {
  if (scale.skip_layers.empty()) return 1;
  return *std::max_element(scale.skip_layers.begin(), scale.skip_layers.end()) + 2;
}

absl::StatusOr<nlohmann::json> rope_json(const RopeSettings& settings,
                                         const std::vector<int64_t>& positions, int64_t layers) {
  if (layers < 1)
    return absl::InvalidArgumentError(absl::StrCat("--layers must be >= 1, got ", layers));
  for (int64_t p : positions) {
    if (p < 0) return absl::InvalidArgumentError(absl::StrCat("--positions must be >= 0, got ", p));
  }
  ROTOR_ASSIGN_OR_RETURN(RopeTables tables, compute_rope(settings.rope, settings.head_dim));
  ROTOR_RETURN_IF_ERROR(validate_logit_scale(settings.logit_scale));

  nlohmann::json scale_layers = nlohmann::json::array();
  for (int64_t layer = 0; layer < layers; ++layer) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t p : positions) row.push_back(logit_scale_at(settings.logit_scale, layer, p));
    scale_layers.push_back(std::move(row));
  }
  nlohmann::json inv_freq = nlohmann::json::array();
  for (float f : tables.inv_freq) inv_freq.push_back(static_cast<double>(f));
  return nlohmann::json{
      {"inv_freq", std::move(inv_freq)},
      {"attention_factor", tables.attention_factor},
      {"logit_scale", {{"positions", positions}, {"layers", std::move(scale_layers)}}},
  };
}

}  // namespace rotor
