// Per-token log-probabilities of a token sequence under a model: what
// `rotor score` prints. The logits are materialised ([n, vocab_size] f32),
// so this is for texts up to a few thousand tokens.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"
#include "model/llama.h"

namespace rotor {

struct ScoreResult {
  std::string checkpoint;  // the checkpoint directory scored with
  int64_t step = 0;
  int64_t vocab_size = 0;
  // logprobs[i] = log p(ids[i] | ids[0..i)), in double; logprobs[0] is NaN.
  std::vector<double> logprobs;
  // [n, vocab_size] row-major (row i: position i's logits), only when asked for.
  std::vector<float> logits;
  double nll_sum = 0;   // -sum of logprobs[1..n)
  int64_t scored = 0;   // n - 1

  double mean_nll() const { return scored ? nll_sum / static_cast<double>(scored) : 0.0; }
  double perplexity() const { return std::exp(mean_nll()); }
};

// Scores `ids` (at least 2, each in [0, vocab_size)) with a loaded model: one
// forward pass, batch of 1, positions 0..n-1. InvalidArgument names the
// 1-based index of a bad id.
absl::StatusOr<ScoreResult> score_ids(LlamaModel& model, std::span<const int32_t> ids,
                                      bool keep_logits);

// ---- The inputs of `rotor score` (--tokens FILE, --text FILE).

// The contents of file `path`: InvalidArgument for a directory, NotFound when
// it does not open, DataLoss on a read error; each names the file.
absl::StatusOr<std::string> read_text_file(const std::string& path);

// A token file: whitespace-separated integers in [0, vocab_size). Errors name
// the file and the 1-based token index.
absl::StatusOr<std::vector<int32_t>> read_token_file(const std::string& path, int64_t vocab_size);

// Text file `path` tokenized with `tokenizer` (no bos/eos added), every id
// checked against the model's vocabulary [0, vocab_size): InvalidArgument
// naming the file, the 1-based token index and the tokenizer otherwise.
absl::StatusOr<std::vector<int32_t>> encode_text_file(const Tokenizer& tokenizer, const std::string& path,
                                                      int64_t vocab_size);

}  // namespace rotor
