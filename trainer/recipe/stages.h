// The loader's handling of `stages:` (see "Stages" in trainer/recipe/recipe.h).
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/recipe/recipe.h"

namespace rotor::recipe_internal {

// Reads the `stages:` list of `file` into out.stages (replacing inherited
// stages; null clears them), each set key checked against the schema and the
// keys a stage may not set. Locations: where["stages.NAME"],
// where["stages.NAME.steps"], where["stages.NAME.KEY"].
absl::Status parse_stages(const YAML::Node& node, const std::string& file, recipe::Recipe& out,
                          RecipeSourceMap& where);

// `stages.NAME.KEY` = value (KEY "steps": the stage's steps), for --set and sweeps.
absl::Status set_stage_path(recipe::Recipe& r, const std::string& dotted, const YAML::Node& value,
                            const std::string& location, RecipeSourceMap& where);

// An error when a stage of `r` sets `key` or a key inside or around it: a
// --set or sweep (`what`) of the recipe's key would not reach that stage.
absl::Status check_not_staged(const recipe::Recipe& r, const std::string& key, const std::string& location,
                              const std::string& what);

// Stage `index` of `given`: given without stages and sweep, the stage's set
// applied, train.steps = its steps; `where` gets the set's locations.
absl::StatusOr<recipe::Recipe> stage_recipe(const recipe::Recipe& given, int index, RecipeSourceMap& where);

// The `stages:` section as YAML text ("" without stages).
std::string stages_yaml(const recipe::Recipe& r);

}  // namespace rotor::recipe_internal
