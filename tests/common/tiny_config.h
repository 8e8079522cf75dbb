// The smallest Llama the tests train and decode: 2 layers, 16 wide, FFN 24,
// GQA with 2 query heads on 1 kv head (head_dim 8), over `vocab` tokens.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace rotor::testing {

inline LlamaConfig tiny_config(int64_t vocab) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  return c;
}

// A little larger, the one the trainer's step tests use: 2 layers, 32 wide,
// FFN 64, 4 query heads on 2 kv heads, vocab 64, positions up to 64.
inline LlamaConfig small_config() {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  return c;
}

}  // namespace rotor::testing
