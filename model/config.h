// LlamaConfig: the model's shape, with Hugging Face's field names and meaning
// (config.json of LlamaForCausalLM), so import/export is a field-by-field copy.
// The RoPE method lives in RopeConfig (model/rope.h); rope_theta here is the
// base that RopeConfig::theta starts from.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace rotor {

struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;   // GQA when < num_attention_heads
  int64_t head_dim = 0;               // 0: hidden_size / num_attention_heads (HF default)
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 4096;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;    // std of the normal init of weight matrices
  std::string hidden_act = "silu";    // only silu (SwiGLU) is supported
  bool attention_bias = false;        // only false is supported
  bool mlp_bias = false;              // only false is supported

  // head_dim, or hidden_size / num_attention_heads when head_dim is 0.
  int64_t resolved_head_dim() const;
  // Errors name the field ("num_attention_heads (32) must be a multiple of
  // num_key_value_heads (5)").
  absl::Status validate() const;
  // Total parameter count (embedding, blocks, norm, untied head).
  int64_t num_parameters() const;
};

}  // namespace rotor
