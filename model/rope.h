// RoPE methods and attention-logit scalars: the one place that knows which
// method a recipe chose. Everything downstream receives plain numbers:
//   - per-pair inverse frequencies (head_dim / 2 floats) and an attention
//     factor that multiplies cos and sin (so the logits by factor^2), exactly
//     as Hugging Face transformers' modeling_rope_utils defines them for the
//     same rope_type, so exported checkpoints mean the same thing there;
//   - a query multiplier per (layer, absolute position), applied to the
//     rotated query, which multiplies the logits by exactly that value.
//
// Pair i rotates dims (i, i + head_dim/2) (rotate-half / NeoX pairing, as HF).
//
// | method   | what it does (theta = rope.theta, s = rope.factor, d = head_dim)          |
// |----------|---------------------------------------------------------------------------|
// | none     | inv_freq_i = theta^(-2i/d); ABF = a larger theta                          |
// | linear   | inv_freq_i / s (position interpolation)                                   |
// | ntk      | theta' = theta * s^(d/(d-2))                                              |
// | dynamic  | theta' = theta * (s*n/L - (s-1))^(d/(d-2)), n = max(sequence_length, L)   |
// | yarn     | ramp in pair index between the beta_fast/beta_slow correction dims;       |
// |          | attention_factor = 0.1 ln s + 1 unless given                              |
// | llama3   | wavelength bands low_freq_factor / high_freq_factor of L                  |
// | longrope | inv_freq_i / ext_i, ext = long_factor if sequence_length > L else short   |
// |          | attention_factor = sqrt(1 + ln s / ln L) unless given                     |
// (L = rope.original_max_position.)
//
// Logit scalars (logit_scale section), value at layer l, 0-based position p:
//   none:         1
//   constant:     value
//   log_position: max(min, ln(p + 1) / ln(base_length))   (entropy-aware ABF)
// and exactly 1 in every layer listed in skip_layers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rotor {

enum class RopeMethod { kNone, kLinear, kNtk, kDynamic, kYarn, kLlama3, kLongRope };

// The recipe's `rope` section. Field names follow the recipe keys.
struct RopeConfig {
  RopeMethod method = RopeMethod::kNone;
  double theta = 10000.0;                    // rope.theta
  double factor = 1.0;                       // rope.factor (s), >= 1
  int64_t original_max_position = 0;         // rope.original_max_position (L)
  double beta_fast = 32.0;                   // rope.beta_fast (yarn)
  double beta_slow = 1.0;                    // rope.beta_slow (yarn)
  bool truncate = true;                      // rope.truncate (yarn: floor/ceil the ramp ends)
  double low_freq_factor = 1.0;              // rope.low_freq_factor (llama3)
  double high_freq_factor = 4.0;             // rope.high_freq_factor (llama3)
  std::vector<double> short_factor;          // rope.short_factor (longrope), d/2 values
  std::vector<double> long_factor;           // rope.long_factor (longrope), d/2 values
  std::optional<double> attention_factor;    // rope.attention_factor (yarn, longrope)
  int64_t sequence_length = 0;               // rope.sequence_length: current length (dynamic, longrope)
};

enum class LogitScaleKind { kNone, kConstant, kLogPosition };

// The recipe's `logit_scale` section.
struct LogitScaleConfig {
  LogitScaleKind kind = LogitScaleKind::kNone;
  double value = 1.0;                 // logit_scale.value (constant), > 0
  int64_t base_length = 4096;         // logit_scale.base_length (log_position), >= 2
  std::vector<int64_t> skip_layers;   // logit_scale.skip_layers: multiplier 1 there
  double min = 1.0;                   // logit_scale.min (log_position lower bound), > 0
};

struct RopeTables {
  std::vector<float> inv_freq;      // [head_dim / 2]
  double attention_factor = 1.0;    // multiplies cos and sin (f32 kernels round it)
};

// Recipe spelling <-> enum ("none", "linear", "ntk", "dynamic", "yarn",
// "llama3", "longrope"; "none"/"constant"/"log_position").
absl::StatusOr<RopeMethod> parse_rope_method(const std::string& name);
const char* rope_method_name(RopeMethod method);
absl::StatusOr<LogitScaleKind> parse_logit_scale_kind(const std::string& name);
const char* logit_scale_kind_name(LogitScaleKind kind);

// Checks every value; an error names the recipe key (e.g. "rope.factor must be
// >= 1, got 0.5", "model.head_dim must be even, got 63").
absl::Status validate_rope(const RopeConfig& rope, int64_t head_dim);
absl::Status validate_logit_scale(const LogitScaleConfig& scale);

// Inverse frequencies and attention factor. Computed in double and rounded to
// float once. For dynamic and longrope the result depends on
// rope.sequence_length (the current length); the model sets it per batch.
absl::StatusOr<RopeTables> compute_rope(const RopeConfig& rope, int64_t head_dim);

// Query multiplier at `layer` and 0-based absolute `position`.
double logit_scale_at(const LogitScaleConfig& scale, int64_t layer, int64_t position);
// True when the multiplier is 1 at every position of `layer` (no work needed).
bool logit_scale_is_identity(const LogitScaleConfig& scale, int64_t layer);

}  // namespace rotor
