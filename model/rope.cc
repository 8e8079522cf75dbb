// RoPE methods and logit scalars. Formulas follow Hugging Face transformers'
// modeling_rope_utils (_compute_*_parameters) term by term, evaluated in double
// and rounded to float once at the end. Where HF computes an intermediate in
// float32 (the YaRN ramp, pos_freqs) the result here can differ from HF's by
// one float ulp; the formula is the same.
#include "model/rope.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "kernels/status.h"

namespace rotor {
namespace {

constexpr std::array<std::pair<RopeMethod, const char*>, 7> kRopeMethodNames = {{
    {RopeMethod::kNone, "none"},
    {RopeMethod::kLinear, "linear"},
    {RopeMethod::kNtk, "ntk"},
    {RopeMethod::kDynamic, "dynamic"},
    {RopeMethod::kYarn, "yarn"},
    {RopeMethod::kLlama3, "llama3"},
    {RopeMethod::kLongRope, "longrope"},
}};

constexpr std::array<std::pair<LogitScaleKind, const char*>, 3> kLogitScaleKindNames = {{
    {LogitScaleKind::kNone, "none"},
    {LogitScaleKind::kConstant, "constant"},
    {LogitScaleKind::kLogPosition, "log_position"},
}};

template <typename Table>
std::string accepted_names(const Table& table) {
  return absl::StrJoin(
      table, ", ", [](std::string* out, const auto& entry) { absl::StrAppend(out, entry.second); });
}

absl::Status invalid(absl::string_view key, absl::string_view what, double got) {
  return absl::InvalidArgumentError(absl::StrCat(key, " must be ", what, ", got ", got));
}

// value is finite and > 0 (NaN fails every comparison, so it is rejected).
bool positive_finite(double v) { return v > 0 && std::isfinite(v); }

// theta^(-2i/d) for i = 0..d/2-1: HF's 1 / base ** (arange(0, d, 2) / d).
std::vector<double> default_inv_freq(double theta, int64_t head_dim) {
  std::vector<double> inv(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  }
  return inv;
}

// HF _compute_yarn_parameters (with `truncate`, as in transformers >= 4.56).
std::vector<double> yarn_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  const double d = static_cast<double>(head_dim);
  const double big_l = static_cast<double>(rope.original_max_position);
  // Pair index at which a pair makes `rotations` full turns in L positions.
  auto correction_dim = [&](double rotations) {
    return d * std::log(big_l / (rotations * 2.0 * std::numbers::pi)) /
           (2.0 * std::log(rope.theta));
  };
  double low = correction_dim(rope.beta_fast);
  double high = correction_dim(rope.beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  // HF clamps high to d - 1 (not d/2 - 1); the ramp is then over d/2 pairs.
  low = std::max(low, 0.0);
  high = std::min(high, d - 1.0);
  if (low == high) high += 0.001;  // HF: "prevent singularity"

  std::vector<double> inv(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    const double pos_freq = std::pow(rope.theta, static_cast<double>(2 * i) / d);
    const double extrapolation = 1.0 / pos_freq;
    const double interpolation = 1.0 / (rope.factor * pos_freq);
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_factor = 1.0 - ramp;
    inv[i] = interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  return inv;
}

// HF _compute_llama3_parameters.
std::vector<double> llama3_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  std::vector<double> inv = default_inv_freq(rope.theta, head_dim);
  const double big_l = static_cast<double>(rope.original_max_position);
  const double low_freq_wavelen = big_l / rope.low_freq_factor;
  const double high_freq_wavelen = big_l / rope.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen < high_freq_wavelen) continue;  // high frequency: unchanged
    if (wavelen > low_freq_wavelen) {           // low frequency: interpolate by s
      f = f / rope.factor;
      continue;
    }
    const double smooth =
        (big_l / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
    f = (1.0 - smooth) * f / rope.factor + smooth * f;
  }
  return inv;
}

}  // namespace

absl::StatusOr<RopeMethod> parse_rope_method(const std::string& name) {
  for (const auto& [method, spelling] : kRopeMethodNames) {
    if (name == spelling) return method;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown rope.method '", name, "'; accepted: ", accepted_names(kRopeMethodNames)));
}

const char* rope_method_name(RopeMethod method) {
  for (const auto& [m, spelling] : kRopeMethodNames) {
    if (m == method) return spelling;
  }
  return "unknown";
}

absl::StatusOr<LogitScaleKind> parse_logit_scale_kind(const std::string& name) {
  for (const auto& [kind, spelling] : kLogitScaleKindNames) {
    if (name == spelling) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown logit_scale.kind '", name, "'; accepted: ", accepted_names(kLogitScaleKindNames)));
}

const char* logit_scale_kind_name(LogitScaleKind kind) {
  for (const auto& [k, spelling] : kLogitScaleKindNames) {
    if (k == kind) return spelling;
  }
  return "unknown";
}

absl::Status validate_rope(const RopeConfig& rope, int64_t head_dim) {
  if (head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("model.head_dim must be > 0, got ", head_dim));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model.head_dim must be even, got ", head_dim));
  }
  if (!positive_finite(rope.theta)) return invalid("rope.theta", "a finite number > 0", rope.theta);
  if (!(rope.factor >= 1) || !std::isfinite(rope.factor)) {
    return invalid("rope.factor", ">= 1", rope.factor);
  }
  if (rope.sequence_length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope.sequence_length must be >= 0, got ", rope.sequence_length));
  }
  const RopeMethod m = rope.method;
  const char* name = rope_method_name(m);
  if ((m == RopeMethod::kNtk || m == RopeMethod::kDynamic) && head_dim <= 2) {
    // theta * s^(d/(d-2)) is undefined at d = 2.
    return absl::InvalidArgumentError(
        absl::StrCat("model.head_dim must be > 2 for rope.method ", name, ", got ", head_dim));
  }
  const bool needs_original = m == RopeMethod::kDynamic || m == RopeMethod::kYarn ||
                              m == RopeMethod::kLlama3 || m == RopeMethod::kLongRope;
  if (needs_original && rope.original_max_position <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rope.original_max_position (the pretrained length L) is required for rope.method ", name,
        " and must be > 0, got ", rope.original_max_position));
  }
  if (m == RopeMethod::kYarn) {
    if (!positive_finite(rope.beta_slow)) {
      return invalid("rope.beta_slow", "a finite number > 0", rope.beta_slow);
    }
    if (!(rope.beta_fast > rope.beta_slow) || !std::isfinite(rope.beta_fast)) {
      return absl::InvalidArgumentError(absl::StrCat("rope.beta_fast must be > rope.beta_slow (",
                                                     rope.beta_slow, "), got ", rope.beta_fast));
    }
    if (rope.theta == 1.0) {
      // The correction dims divide by ln(theta).
      return absl::InvalidArgumentError("rope.theta must not be 1 for rope.method yarn");
    }
  }
  if (m == RopeMethod::kLlama3) {
    if (!positive_finite(rope.low_freq_factor)) {
      return invalid("rope.low_freq_factor", "a finite number > 0", rope.low_freq_factor);
    }
    if (!(rope.high_freq_factor > rope.low_freq_factor) || !std::isfinite(rope.high_freq_factor)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rope.high_freq_factor must be > rope.low_freq_factor (",
                       rope.low_freq_factor, "), got ", rope.high_freq_factor));
    }
  }
  const size_t pairs = static_cast<size_t>(head_dim / 2);
  if (m == RopeMethod::kLongRope) {
    for (const auto& [key, list] : {std::pair{"rope.short_factor", &rope.short_factor},
                                    std::pair{"rope.long_factor", &rope.long_factor}}) {
      if (list->size() != pairs) {
        return absl::InvalidArgumentError(absl::StrCat(key,
                                                       " must have model.head_dim / 2 = ", pairs,
                                                       " values for longrope, got ", list->size()));
      }
      for (size_t i = 0; i < pairs; ++i) {
        if (!positive_finite((*list)[i])) {
          return invalid(absl::StrCat(key, "[", i, "]"), "a finite number > 0", (*list)[i]);
        }
      }
    }
    if (!rope.attention_factor && rope.factor > 1 && rope.original_max_position < 2) {
      // The default attention factor divides by ln(L).
      return absl::InvalidArgumentError(absl::StrCat(
          "rope.original_max_position must be >= 2 for longrope's default attention factor, got ",
          rope.original_max_position));
    }
  } else if (!rope.short_factor.empty() || !rope.long_factor.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(rope.short_factor.empty() ? "rope.long_factor" : "rope.short_factor",
                     " applies only to longrope (rope.method is ", name, ")"));
  }
  if (rope.attention_factor) {
    if (m != RopeMethod::kYarn && m != RopeMethod::kLongRope) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rope.attention_factor applies only to yarn and longrope (rope.method is ", name, ")"));
    }
    if (!positive_finite(*rope.attention_factor)) {
      return invalid("rope.attention_factor", "a finite number > 0", *rope.attention_factor);
    }
  }
  return absl::OkStatus();
}

absl::Status validate_logit_scale(const LogitScaleConfig& scale) {
  if (!positive_finite(scale.value))
    return invalid("logit_scale.value", "a finite number > 0", scale.value);
  if (scale.base_length < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("logit_scale.base_length must be >= 2, got ", scale.base_length));
  }
  if (!positive_finite(scale.min))
    return invalid("logit_scale.min", "a finite number > 0", scale.min);
  for (int64_t layer : scale.skip_layers) {
    if (layer < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_scale.skip_layers must be >= 0, got ", layer));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RopeTables> compute_rope(const RopeConfig& rope, int64_t head_dim) {
  ROTOR_RETURN_IF_ERROR(validate_rope(rope, head_dim));
  const double d = static_cast<double>(head_dim);
  std::vector<double> inv;
  double attention_factor = 1.0;
  switch (rope.method) {
    case RopeMethod::kNone:
      inv = default_inv_freq(rope.theta, head_dim);
      break;
    case RopeMethod::kLinear:
      inv = default_inv_freq(rope.theta, head_dim);
      for (double& f : inv) f /= rope.factor;
      break;
    case RopeMethod::kNtk:
      inv = default_inv_freq(rope.theta * std::pow(rope.factor, d / (d - 2.0)), head_dim);
      break;
    case RopeMethod::kDynamic: {
      const int64_t big_l = rope.original_max_position;
      if (rope.sequence_length <= big_l) {
        // n = L: the base factor (s*L/L - (s-1)) is 1; skip the arithmetic so
        // the result is bit-identical to `none` (HF may differ by an ulp here).
        inv = default_inv_freq(rope.theta, head_dim);
      } else {
        const double n = static_cast<double>(rope.sequence_length);
        const double scale = rope.factor * n / static_cast<double>(big_l) - (rope.factor - 1.0);
        inv = default_inv_freq(rope.theta * std::pow(scale, d / (d - 2.0)), head_dim);
      }
      break;
    }
    case RopeMethod::kYarn:
      inv = yarn_inv_freq(rope, head_dim);
      attention_factor = rope.attention_factor.value_or(
          rope.factor <= 1.0 ? 1.0 : 0.1 * std::log(rope.factor) + 1.0);
      break;
    case RopeMethod::kLlama3:
      inv = llama3_inv_freq(rope, head_dim);
      break;
    case RopeMethod::kLongRope: {
      const std::vector<double>& ext =
          rope.sequence_length > rope.original_max_position ? rope.long_factor : rope.short_factor;
      inv.resize(static_cast<size_t>(head_dim / 2));
      for (size_t i = 0; i < inv.size(); ++i) {
        inv[i] = 1.0 / (ext[i] * std::pow(rope.theta, static_cast<double>(2 * i) / d));
      }
      attention_factor = rope.attention_factor.value_or(
          rope.factor <= 1.0
              ? 1.0
              : std::sqrt(1.0 + std::log(rope.factor) /
                                    std::log(static_cast<double>(rope.original_max_position))));
      break;
    }
  }
  RopeTables tables;
  tables.inv_freq.assign(inv.begin(), inv.end());  // the one rounding to float
  tables.attention_factor = attention_factor;
  return tables;
}

double logit_scale_at(const LogitScaleConfig& scale, int64_t layer, int64_t position) {
  if (std::find(scale.skip_layers.begin(), scale.skip_layers.end(), layer) !=
      scale.skip_layers.end()) {
    return 1.0;
  }
  switch (scale.kind) {
    case LogitScaleKind::kNone:
      return 1.0;
    case LogitScaleKind::kConstant:
      return scale.value;
    case LogitScaleKind::kLogPosition:
      return std::max(scale.min, std::log(static_cast<double>(position) + 1.0) /
                                     std::log(static_cast<double>(scale.base_length)));
  }
  return 1.0;
}

bool logit_scale_is_identity(const LogitScaleConfig& scale, int64_t layer) {
  if (std::find(scale.skip_layers.begin(), scale.skip_layers.end(), layer) !=
      scale.skip_layers.end()) {
    return true;
  }
  switch (scale.kind) {
    case LogitScaleKind::kNone:
      return true;
    case LogitScaleKind::kConstant:
      return scale.value == 1.0;
    case LogitScaleKind::kLogPosition:
      // ln(p+1)/ln(base_length) grows without bound, so some position is > 1.
      return false;
  }
  return false;
}

}  // namespace rotor
