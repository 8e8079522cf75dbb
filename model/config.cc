#include "model/config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace rotor {

int64_t LlamaConfig::resolved_head_dim() const {
  if (head_dim > 0) return head_dim;
  return num_attention_heads > 0 ? hidden_size / num_attention_heads : 0;
}

absl::Status LlamaConfig::validate() const {
  auto positive = [](const char* name, int64_t v) -> absl::Status {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
    return absl::OkStatus();
  };
  for (auto [name, v] : {std::pair{"vocab_size", vocab_size},
                         {"hidden_size", hidden_size},
                         {"intermediate_size", intermediate_size},
                         {"num_hidden_layers", num_hidden_layers},
                         {"num_attention_heads", num_attention_heads},
                         {"num_key_value_heads", num_key_value_heads},
                         {"max_position_embeddings", max_position_embeddings}}) {
    ROTOR_RETURN_IF_ERROR(positive(name, v));
  }
  if (head_dim < 0) return absl::InvalidArgumentError(absl::StrCat("head_dim must be >= 0, got ", head_dim));
  if (head_dim == 0 && hidden_size % num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hidden_size (", hidden_size, ") must be a multiple of num_attention_heads (",
                     num_attention_heads, ") when head_dim is not given"));
  }
  if (resolved_head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must be even for RoPE, got ", resolved_head_dim()));
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_attention_heads (", num_attention_heads, ") must be a multiple of num_key_value_heads (",
        num_key_value_heads, ")"));
  }
  if (!(rms_norm_eps > 0)) return absl::InvalidArgumentError(absl::StrCat("rms_norm_eps must be > 0, got ", rms_norm_eps));
  if (!(rope_theta > 0)) return absl::InvalidArgumentError(absl::StrCat("rope_theta must be > 0, got ", rope_theta));
  if (!(initializer_range >= 0)) return absl::InvalidArgumentError("initializer_range must be >= 0");
  if (hidden_act != "silu") {
    return absl::InvalidArgumentError(absl::StrCat("hidden_act '", hidden_act, "' is not supported (only silu)"));
  }
  if (attention_bias) return absl::InvalidArgumentError("attention_bias=true is not supported");
  if (mlp_bias) return absl::InvalidArgumentError("mlp_bias=true is not supported");
  return absl::OkStatus();
}

int64_t LlamaConfig::num_parameters() const {
  const int64_t hd = resolved_head_dim();
  const int64_t attn = hidden_size * hd * (num_attention_heads + 2 * num_key_value_heads) +
                       num_attention_heads * hd * hidden_size;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t block = attn + mlp + 2 * hidden_size;
  return vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * block +
         hidden_size;
}

double LlamaConfig::training_flops_per_token(int64_t sequence_length) const {
  const double hd = static_cast<double>(resolved_head_dim());
  const double d = static_cast<double>(hidden_size);
  const double attn = d * hd * static_cast<double>(num_attention_heads + 2 * num_key_value_heads) +
                      static_cast<double>(num_attention_heads) * hd * d;
  const double mlp = 3.0 * d * static_cast<double>(intermediate_size);
  const double matmul_weights =
      static_cast<double>(num_hidden_layers) * (attn + mlp) + static_cast<double>(vocab_size) * d;
  return 6.0 * matmul_weights + 12.0 * static_cast<double>(num_hidden_layers * num_attention_heads) *
                                    hd * static_cast<double>(sequence_length);
}

int64_t default_tile_tokens(int64_t intermediate_size) {
  const int64_t rows = (int64_t{1} << 23) / std::max<int64_t>(intermediate_size, 1);
  return std::clamp<int64_t>(rows / 64 * 64, 256, 16384);
}

}  // namespace rotor
