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
  // Model FLOPs of one training token (forward + backward) at `sequence_length`,
  // the PaLM (Chowdhery et al. 2022, appendix B) count used for MFU:
  //   6 * N + 12 * layers * heads * head_dim * sequence_length
  // where N counts the weights that take part in matmuls (blocks and output
  // head; the input embedding is a lookup and is left out) and the second term
  // is QK^T and PV over the whole (unmasked) sequence. Recompute is not counted
  // (that would be hardware FLOPs, not model FLOPs).
  double training_flops_per_token(int64_t sequence_length) const;
};

// The MLP tile for a model of intermediate size F: rows such that one
// [rows, F] intermediate holds about 8M elements (32 MiB in f32), a multiple
// of 64 in [256, 16384]. Three such buffers (gate, up, their product) are the
// MLP's transient memory whatever the sequence length.
int64_t default_tile_tokens(int64_t intermediate_size);

}  // namespace rotor
