// Hugging Face config.json (LlamaForCausalLM) <-> rotor's LlamaConfig,
// RopeConfig and LogitScaleConfig.
//
// Reading (parse_hf_config) follows what transformers computes for the same
// file; defaults are HF LlamaConfig's (max_position_embeddings 2048,
// rms_norm_eps 1e-6, rope_theta 10000, num_key_value_heads =
// num_attention_heads, head_dim = hidden_size / num_attention_heads,
// tie_word_embeddings false, initializer_range 0.02). Both the transformers 4
// form (top-level rope_theta + rope_scaling, key "rope_type" or the legacy
// "type") and the transformers 5 form (rope_parameters with rope_theta inside;
// a per-layer-type dict only when every entry is the same) are read; when a
// file has both they must agree. head_dim equal to hidden_size /
// num_attention_heads is stored as 0 (rotor's "HF default").
//
// rope_type -> RopeMethod:
//   default  -> none
//   linear   -> linear   (factor)
//   dynamic  -> dynamic  (factor; L = max_position_embeddings, the length HF
//               uses; an original_max_position_embeddings that differs from it
//               is refused, since transformers versions disagree on it)
//   yarn     -> yarn     (factor, beta_fast (32), beta_slow (1), truncate
//               (true), attention_factor; L = original_max_position_embeddings,
//               else max_position_embeddings. The explicit factor wins over
//               max_position_embeddings / original_max_position_embeddings, as
//               in transformers >= 4.56 and 5. mscale + mscale_all_dim without
//               attention_factor become attention_factor =
//               get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim),
//               exactly HF's value; a non-numeric one is refused.)
//   llama3   -> llama3   (factor, low_freq_factor, high_freq_factor,
//               original_max_position_embeddings: all required, as in HF)
//   longrope -> longrope (short_factor, long_factor, attention_factor;
//               L = top-level original_max_position_embeddings, else the one
//               in the rope dict, else max_position_embeddings; when an
//               original is given factor = max_position_embeddings / L (as HF
//               derives it, clamped to >= 1, which gives the same default
//               attention factor), else the dict's factor)
//
// Writing (make_hf_config) produces a file that transformers 4 and 5 read as
// the same model: the legacy pair rope_theta + rope_scaling (absent for none)
// and rope_parameters (rope_theta inside). It refuses what HF cannot express
// identically:
//   - ntk: HF has no static NTK rope_type. Exported as what HF computes
//     identically: rope_type default with rope_theta = theta * s^(d/(d-2))
//     (the very double rotor's compute_rope uses), plus an extra field
//     "rotor_rope": {"method": "ntk", "theta", "factor"} that transformers
//     ignores and parse_hf_config reads back (checking it matches rope_theta).
//   - dynamic with original_max_position != max_position_embeddings (HF's
//     dynamic NTK always uses max_position_embeddings).
//   - yarn / longrope with original_max_position != max_position_embeddings
//     and max_position_embeddings / original_max_position != factor (older
//     transformers derive the factor from that ratio). With L equal to
//     max_position_embeddings the original is not written at all.
//   yarn truncate=false is written as "truncate": false; transformers < 4.56
//   ignores that key (always truncates).
// A logit scalar other than none is written as the extra field
// "rotor_logit_scale": {"kind", "value", "base_length", "skip_layers", "min"}.
// rope.sequence_length (runtime state) is not exported; parsing leaves it 0.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/rope.h"
#include "nlohmann/json.hpp"

namespace rotor {

struct HfModel {
  LlamaConfig config;            // rope_theta == rope.theta
  RopeConfig rope;               // method and parameters
  LogitScaleConfig logit_scale;  // none unless the file has "rotor_logit_scale"
};

// Parses a config.json object. `where` (a path) prefixes every error, which
// names the key (e.g. "<where>: model_type must be \"llama\", got \"mistral\"").
absl::StatusOr<HfModel> parse_hf_config(const nlohmann::json& config, const std::string& where);

// The config.json rotor exports; `dtype` ("bfloat16", "float16" or "float32") becomes
// torch_dtype. Errors (an invalid model, a method HF cannot express
// identically) name the field.
absl::StatusOr<nlohmann::json> make_hf_config(const HfModel& model, const std::string& dtype);

}  // namespace rotor
