// Incremental (KV-cache) decoding of a LlamaModel on one device, for
// generation-based evaluation (eval/retrieval: passkey and needle grids).
//
//   absl::StatusOr<Decoder> d = Decoder::create(model);
//   GreedyResult r = d->greedy(prompt_ids, /*max_new_tokens=*/8, /*stop=*/eos);
//
// The decoder computes exactly what LlamaModel::logits computes for the whole
// sequence so far (a batch of 1, positions 0..n-1, no document masking), with
// the same code (LlamaModel::prepare_context for the tables and multipliers,
// LlamaBlock::forward with a KvCacheLayer per layer), but processing only the
// new tokens: per layer it keeps the rotated keys and the values of every
// earlier token [n, Hkv, hd] and attends the new queries to them with global
// positions (key j visible to query i iff j <= i).
//
// RoPE and the logit scalar: the query multiplier of layer l at position p is
// logit_scale_at(options.logit_scale, l, p), p global. The RoPE tables come
// from compute_rope with rope.sequence_length = n (the length after the new
// tokens), as LlamaModel::prepare_context picks them for a sequence of n
// tokens. For methods whose tables do not depend on the length (none, linear,
// ntk, yarn, llama3) they never change. For dynamic NTK (every length past
// original_max_position) and LongRoPE (once, when the length passes it) they
// do: then the decoder recomputes the whole cache from the token history
// (`rebuilds()` counts it), so cached decoding equals a full forward pass of
// the sequence at every step. Re-rotating only the cached keys would not be
// enough: from layer 1 on, keys and values depend on the attention outputs of
// the earlier layers, which used the older frequencies. Cost: past the
// original length, dynamic NTK re-runs the prefix at every step (quadratic in
// the answer length, fine for the short answers of retrieval tests); LongRoPE
// re-runs it once.
// Hugging Face transformers instead keeps the keys cached with the
// frequencies they were rotated with when computed (its dynamic NTK only
// updates inv_freq for new tokens), so for dynamic NTK beyond the original
// length its cached generation differs from a full forward pass (and from
// this decoder).
//
// Attention entropy: every processed token's query row gives per (layer,
// head) -sum_j p_j ln p_j over its visible keys; `last_entropy()` is the mean
// over layers and heads of the last processed token (the row whose logits
// predict the next token).
//
// Single rank only: options.parallel with tp or cp of more than one rank is
// refused by create(). The model must outlive the decoder and its weights
// must not change while a sequence is being decoded.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "model/llama.h"

namespace rotor {

struct GreedyResult {
  std::vector<int32_t> tokens;    // generated ids (the stop token included when produced)
  std::vector<double> logprobs;   // log p of each generated id under the model
  // Mean attention entropy (over layers and heads) of the query row that
  // produced each generated token.
  std::vector<double> entropy;
};

class Decoder {
 public:
  // InvalidArgument when the model is tensor- or context-parallel.
  static absl::StatusOr<Decoder> create(LlamaModel& model);

  // Clears the cache and processes `prompt` (at least one id, each in
  // [0, vocab_size)). Returns the next token's log-probabilities [V].
  std::vector<double> prefill(std::span<const int32_t> prompt);
  // Appends one token at position length(); returns the next token's
  // log-probabilities [V]. Needs a prefill first.
  std::vector<double> step(int32_t token);

  // prefill(prompt), then up to max_new_tokens argmax tokens (ties: the
  // lowest id), stopping after `stop` when it is produced.
  GreedyResult greedy(std::span<const int32_t> prompt, int64_t max_new_tokens,
                      std::optional<int32_t> stop = std::nullopt);

  int64_t length() const { return static_cast<int64_t>(tokens_.size()); }
  double last_entropy() const { return last_entropy_; }
  // Times the cache was recomputed because the RoPE tables changed.
  int64_t rebuilds() const { return rebuilds_; }

 private:
  explicit Decoder(LlamaModel& model);
  // Runs tokens_[start, n) through the model against the cache of
  // tokens_[0, start) with the tables of length n; fills the cache rows
  // [start, n) and returns the log-probs of the last row.
  std::vector<double> run(int64_t start);
  void ensure_capacity(int64_t n);

  LlamaModel* model_;
  std::vector<int32_t> tokens_;
  std::vector<Tensor> k_, v_;   // per layer [capacity, Hkv, hd]; rows [0, length) valid
  int64_t capacity_ = 0;
  std::vector<float> inv_freq_;  // tables the cached keys were rotated with
  double attention_factor_ = 1.0;
  double last_entropy_ = 0.0;
  int64_t rebuilds_ = 0;
};

}  // namespace rotor
