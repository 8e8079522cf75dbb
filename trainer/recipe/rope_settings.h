// `rotor rope`: prints what a recipe's RoPE and logit-scale sections mean as
// numbers, without building a model:
//
//   rotor rope [RECIPE.yaml] [--set KEY=VALUE ...] [--stage NAME] [--positions P1,P2,...] [--layers N]
//
// prints one JSON object
//   {"inv_freq": [head_dim/2 floats],
//    "attention_factor": A,                      (multiplies cos and sin)
//    "logit_scale": {"positions": [P1, ...],     (0-based absolute positions)
//                    "layers": [[...], ...]}}    (layers[l][j]: query multiplier
//                                                 of layer l at positions[j])
//
// The recipe is loaded by load_recipe (trainer/recipe/recipe.h) in
// RecipeMode::kRope: any recipe of `rotor train` (same keys, same
// FILE:LINE:COL errors, base: inheritance), then `--set` overrides in order,
// the last one winning; values are YAML (lists as flow lists: --set
// logit_scale.skip_layers=[0,1]). Only model.head_dim is required (given, or
// hidden_size / num_attention_heads); `rotor rope` reads model.head_dim, rope.*
// and logit_scale.* (see rope_setting_keys()). Defaults are the recipe's
// (recipe.proto): rope.method none, rope.theta 10000, ...;
// --positions 0,1023,2047,4095,8191,16383,32767,65535,131071; --layers
// max(logit_scale.skip_layers) + 2 when skip layers are given, else 1.
//
// Errors are load_recipe's (they name the key, and the file location or
// "--set KEY"); the command prints them as "rotor rope: MESSAGE" on stderr and
// exits with status 2.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/rope.h"
#include "nlohmann/json.hpp"

namespace rotor {

// The recipe values `rotor rope` needs.
struct RopeSettings {
  int64_t head_dim = 0;          // model.head_dim (required)
  RopeConfig rope;               // rope.*
  LogitScaleConfig logit_scale;  // logit_scale.*
};

// The keys `rotor rope` reads, "section.key" in schema order: model.head_dim,
// then every key of the rope and logit_scale sections.
std::vector<std::string> rope_setting_keys();

// load_recipe(recipe_path, overrides, RecipeMode::kRope) (recipe_path empty:
// the overrides alone), validated (validate_rope, validate_logit_scale). A
// staged recipe needs `stage`, the name of the stage whose settings are
// wanted (an error lists the names); "" for a recipe without stages.
absl::StatusOr<RopeSettings> load_rope_settings(const std::string& recipe_path,
                                                const std::vector<std::string>& overrides,
                                                const std::string& stage = "");

// --positions and --layers when not given (see the header comment).
std::vector<int64_t> default_rope_positions();
int64_t default_rope_layers(const LogitScaleConfig& scale);

// The JSON object described above. positions must be >= 0, layers >= 1.
// inv_freq holds compute_rope's floats, written as the doubles they widen to
// exactly (so they read back bit-identical); attention_factor is its double.
absl::StatusOr<nlohmann::json> rope_json(const RopeSettings& settings,
                                         const std::vector<int64_t>& positions, int64_t layers);

}  // namespace rotor
