// `rotor rope`: prints what a recipe's RoPE and logit-scale sections mean as
// numbers, without building a model:
//
//   rotor rope [RECIPE.yaml] [--set KEY=VALUE ...] [--positions P1,P2,...] [--layers N]
//
// prints one JSON object
//   {"inv_freq": [head_dim/2 floats],
//    "attention_factor": A,                      (multiplies cos and sin)
//    "logit_scale": {"positions": [P1, ...],     (0-based absolute positions)
//                    "layers": [[...], ...]}}    (layers[l][j]: query multiplier
//                                                 of layer l at positions[j])
//
// Keys are the recipe's (see rope_setting_keys()): model.head_dim (required),
// rope.* and logit_scale.*. A recipe file holds sections `model`, `rope` and
// `logit_scale`; `--set` overrides it, in order, the last one winning. Values
// are YAML (lists as flow lists: --set logit_scale.skip_layers=[0,1]).
// Defaults: rope.method none, rope.theta 10000 (RopeConfig's defaults);
// --positions 0,1023,2047,4095,8191,16383,32767,65535,131071; --layers
// max(logit_scale.skip_layers) + 2 when skip layers are given, else 1.
//
// Errors name the key (and for a recipe file, FILE:LINE:COLUMN); the command
// prints them as "rotor rope: MESSAGE" on stderr and exits with status 2.
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

// The keys parse_rope_settings understands, "section.key", in table order.
std::vector<std::string> rope_setting_keys();

// Applies a recipe and then `overrides` ("KEY=VALUE", VALUE parsed as YAML) to
// the defaults and validates the result (validate_rope, validate_logit_scale).
//   recipe_yaml: the recipe's text; empty means no recipe.
//   recipe_name: how errors in the text refer to it ("NAME:LINE:COL: ...").
// Errors: unknown section or key (with a suggestion when one is close), a
// duplicated key, a value of the wrong type ("rope.factor: expected a number,
// got 'abc'"), an override without '=', a missing model.head_dim, and every
// range error of validate_rope / validate_logit_scale.
absl::StatusOr<RopeSettings> parse_rope_settings(const std::string& recipe_yaml,
                                                 const std::string& recipe_name,
                                                 const std::vector<std::string>& overrides);

// As parse_rope_settings, reading the recipe from `recipe_path` (empty: none).
absl::StatusOr<RopeSettings> load_rope_settings(const std::string& recipe_path,
                                                const std::vector<std::string>& overrides);

// --positions and --layers when not given (see the header comment).
std::vector<int64_t> default_rope_positions();
int64_t default_rope_layers(const LogitScaleConfig& scale);

// The JSON object described above. positions must be >= 0, layers >= 1.
// inv_freq holds compute_rope's floats, written as the doubles they widen to
// exactly (so they read back bit-identical); attention_factor is its double.
absl::StatusOr<nlohmann::json> rope_json(const RopeSettings& settings,
                                         const std::vector<int64_t>& positions, int64_t layers);

}  // namespace rotor
