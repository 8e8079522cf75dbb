// Output projection fused with cross-entropy, computed in chunks so that the
// [N, V] logits never exist at once: only a [token_chunk, vocab_chunk] tile.
//   h        [N, D]   final hidden states
//   w        [V, D]   LM head (or the tied embedding)
//   targets  [N] i32  target id in [0, V), or < 0 to ignore the token
//   loss     [N]      (=) lse_n - logit_n[target_n], 0 for ignored tokens
//   lse      [N]      (=) log-sum-exp of the logits row, saved for backward
// logits = h w^T are formed tile by tile with an online (running max) LSE.
//
// Backward, given dloss [N] (the gradient of the caller's objective with
// respect to each token's loss, e.g. 1 / number of counted tokens):
//   dlogits = dloss_n * (softmax(logits_n) - onehot(target_n))   (per tile)
//   dh (=)  = dlogits @ w          dw (+=) = dlogits^T @ h
// recomputing each logits tile from h and w.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace rotor {

struct CrossEntropyChunks {
  int64_t tokens = 1024;  // rows of the logits tile
  int64_t vocab = 8192;   // columns of the logits tile
};

void cross_entropy_forward(const Tensor& h, const Tensor& w, const Tensor& targets,
                           const Tensor& loss, const Tensor& lse,
                           CrossEntropyChunks chunks = {});
void cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                            const Tensor& lse, const Tensor& dloss, const Tensor& dh,
                            const Tensor& dw, CrossEntropyChunks chunks = {});

}  // namespace rotor
