// Recipe sections <-> typed configs. See convert.h.
#include "trainer/recipe/convert.h"

#include "absl/strings/str_cat.h"
#include "kernels/device.h"
#include "kernels/status.h"

namespace rotor {

DeviceType recipe_device_type(const recipe::Recipe& r) {
  switch (r.device()) {
    case recipe::Recipe::sim: return DeviceType::kSim;
    case recipe::Recipe::cuda: return DeviceType::kCuda;
    default: return DeviceType::kCpu;
  }
}

absl::StatusOr<Device> recipe_device(const recipe::Recipe& r) {
  const DeviceType type = recipe_device_type(r);
  if (type == DeviceType::kSim) return Device::sim();
  if (type == DeviceType::kCpu) return Device::cpu();
  if (cuda_device_count() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device: cuda: ", cuda_unavailable_reason(),
        " (rotor trains on a GPU only when one is usable; device: cpu trains on the CPU)"));
  }
  return Device::cuda(cuda_current_device());
}

absl::StatusOr<RopeConfig> rope_config(const recipe::RopeSection& s) {
  RopeConfig r;
  if (s.has_method()) {
    absl::StatusOr<RopeMethod> method = parse_rope_method(s.method());
    if (!method.ok()) return method.status();
    r.method = *method;
  }
  if (!s.has_factor() && r.method != RopeMethod::kNone && r.method != RopeMethod::kLongRope) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope.factor is required for rope.method=", rope_method_name(r.method)));
  }
  if (s.has_theta()) r.theta = s.theta();
  if (s.has_factor()) r.factor = s.factor();
  if (s.has_original_max_position()) r.original_max_position = s.original_max_position();
  if (s.has_beta_fast()) r.beta_fast = s.beta_fast();
  if (s.has_beta_slow()) r.beta_slow = s.beta_slow();
  if (s.has_truncate()) r.truncate = s.truncate();
  if (s.has_low_freq_factor()) r.low_freq_factor = s.low_freq_factor();
  if (s.has_high_freq_factor()) r.high_freq_factor = s.high_freq_factor();
  r.short_factor.assign(s.short_factor().begin(), s.short_factor().end());
  r.long_factor.assign(s.long_factor().begin(), s.long_factor().end());
  if (s.has_attention_factor()) r.attention_factor = s.attention_factor();
  if (s.has_sequence_length()) r.sequence_length = s.sequence_length();
  return r;
}

absl::StatusOr<LogitScaleConfig> logit_scale_config(const recipe::LogitScaleSection& s) {
  LogitScaleConfig l;
  if (s.has_kind()) {
    absl::StatusOr<LogitScaleKind> kind = parse_logit_scale_kind(s.kind());
    if (!kind.ok()) return kind.status();
    l.kind = *kind;
  }
  if (s.has_value()) l.value = s.value();
  if (s.has_base_length()) l.base_length = s.base_length();
  l.skip_layers.assign(s.skip_layers().begin(), s.skip_layers().end());
  if (s.has_min()) l.min = s.min();
  return l;
}

LlamaConfig llama_config(const recipe::ModelSection& m) {
  LlamaConfig c;
  if (m.has_vocab_size()) c.vocab_size = m.vocab_size();
  if (m.has_hidden_size()) c.hidden_size = m.hidden_size();
  if (m.has_intermediate_size()) c.intermediate_size = m.intermediate_size();
  if (m.has_num_hidden_layers()) c.num_hidden_layers = m.num_hidden_layers();
  if (m.has_num_attention_heads()) c.num_attention_heads = m.num_attention_heads();
  if (m.has_num_key_value_heads()) c.num_key_value_heads = m.num_key_value_heads();
  if (m.has_head_dim()) c.head_dim = m.head_dim();
  if (m.has_rms_norm_eps()) c.rms_norm_eps = m.rms_norm_eps();
  if (m.has_max_position_embeddings()) c.max_position_embeddings = m.max_position_embeddings();
  if (m.has_tie_word_embeddings()) c.tie_word_embeddings = m.tie_word_embeddings();
  if (m.has_initializer_range()) c.initializer_range = m.initializer_range();
  return c;
}

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
    s.clear_short_factor();
    s.clear_long_factor();
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
  s.clear_skip_layers();
  for (int64_t layer : l.skip_layers) s.add_skip_layers(layer);
}

void set_model_section(const LlamaConfig& c, recipe::ModelSection& m) {
  m.set_vocab_size(c.vocab_size);
  m.set_hidden_size(c.hidden_size);
  m.set_intermediate_size(c.intermediate_size);
  m.set_num_hidden_layers(c.num_hidden_layers);
  m.set_num_attention_heads(c.num_attention_heads);
  m.set_num_key_value_heads(c.num_key_value_heads);
  m.set_head_dim(c.resolved_head_dim());
  m.set_rms_norm_eps(c.rms_norm_eps);
  m.set_max_position_embeddings(c.max_position_embeddings);
  m.set_tie_word_embeddings(c.tie_word_embeddings);
  m.set_initializer_range(c.initializer_range);
}

DocumentFormat document_format(const recipe::Dataset& dataset) {
  switch (dataset.format()) {
    case recipe::Dataset::megatron:
      return DocumentFormat::kMegatron;
    case recipe::Dataset::llmc:
      return DocumentFormat::kLlmc;
    default:
      return DocumentFormat::kDetect;
  }
}

}  // namespace rotor
