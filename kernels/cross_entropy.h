// Output projection fused with cross-entropy, computed in chunks so that the
// [N, V] logits never exist at once: only a [token_chunk, vocab_chunk] tile.
//   h        [N, D]   final hidden states
//   w        [V, D]   LM head (or the tied embedding)
//   targets  [N] i32  target id in [0, V), or < 0 to ignore the token
//   loss     [N]      (=) lse_n - logit_n[target_n], 0 for ignored tokens
//   lse      [N]      (=) log-sum-exp of the logits row, saved for backward
// logits = h w^T are formed tile by tile with an online (running max) LSE.
//
// Dtypes (kernels/tensor.h): h, w and dh share one storage dtype, f32 or bf16
// (f64 on the CPU); loss, lse, dloss and dw are in its compute dtype (f32 for
// bf16 h and w, f64 for f64). Logits tiles, the LSE and dlogits are f32 math
// whatever h and w are (on the GPU the dlogits tile is rounded to bf16 before
// the dh / dw GEMMs of a bf16 call; dw still accumulates in f32).
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
  // cross_entropy_forward_backward: tiles of [rows, V] with rows * V at most
  // this many elements (8M floats = 32 MiB; 64 rows at V = 128K).
  int64_t fused_tile_elements = int64_t{1} << 23;
};

// Vocabulary-parallel partials: with vocab_size > 0 (the whole vocabulary), w
// holds rows [vocab_start, vocab_start + V_slice) of the head and targets are
// ids of the whole vocabulary. Forward then gives this slice's lse and
// loss = lse_slice - logit[target] where the target is in the slice, else
// lse_slice (the caller combines slices: parallel/tensor_parallel.h).
// Backward takes the *whole* row's lse, so its softmax is the global one, and
// subtracts the one-hot only inside the slice. A target < 0 is ignored either way.
void cross_entropy_forward(const Tensor& h, const Tensor& w, const Tensor& targets,
                           const Tensor& loss, const Tensor& lse,
                           CrossEntropyChunks chunks = {}, int64_t vocab_start = 0,
                           int64_t vocab_size = 0);
void cross_entropy_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                            const Tensor& lse, const Tensor& dloss, const Tensor& dh,
                            const Tensor& dw, CrossEntropyChunks chunks = {},
                            int64_t vocab_start = 0, int64_t vocab_size = 0);

// Training path: loss, lse, dh (=) and dw (+=) in one pass, for when dloss is
// known before the forward (it is: the loss is the last op and the token
// count comes from the targets). Each [rows, V] logits tile is formed once and
// turned into dlogits in place, so the step costs three GEMMs (as an unfused
// framework that keeps all logits) instead of four (forward, then recompute in
// backward), and still never holds [N, V].
void cross_entropy_forward_backward(const Tensor& h, const Tensor& w, const Tensor& targets,
                                    const Tensor& dloss, const Tensor& loss, const Tensor& lse,
                                    const Tensor& dh, const Tensor& dw,
                                    CrossEntropyChunks chunks = {});

}  // namespace rotor
