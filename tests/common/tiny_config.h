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

}  // namespace rotor::testing
