// Retrieval documents for pretraining data: a synthetic share blended with
// real text so that a small model learns to retrieve within its training
// length, and an evaluation can ask whether it still can beyond it (the
// demo's base model; docs/demo.md). Written by `rotor prep --synthetic`.
//
// Every document is exactly `length` tokens: prompt, answer, eos. Packed at
// sequence length `length` (data/packing.h concatenates documents and cuts
// samples of `length` tokens), a dataset of such documents gives samples
// that are each one whole document, so no question is cut from its key.
//
//   passkey  the eval's passkey prompt (eval/retrieval.h: passkey_prompt) at
//            a random depth, then " NNNNN." and eos
//   needle   RULER's single-needle prompt (eval/ruler_tasks.h, niah_single_1:
//            "A special magic number is hidden within the following text. ...",
//            the needle "One of the special magic numbers for {key} is:
//            {value}.", the noise haystack, "What is the special magic number
//            for {key} ...? The special magic number for {key} mentioned in
//            the provided text is") with `distractors` more needles of other
//            keys (niah_multikey_1's), at random depths; then " NNNNNNN." and
//            eos. The haystack is whole noise sentences plus the first tokens
//            of one more, so the length is exact.
// Keys, values and depths come from (seed, document index): the dataset is a
// pure function of its options, tokenizer and word list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace rotor {

struct SyntheticOptions {
  int64_t passkey = 0;      // documents of each kind (passkey ones first)
  int64_t needle = 0;
  int64_t length = 0;       // tokens per document (the longest, with min_length)
  int64_t min_length = 0;   // > 0: lengths drawn uniformly from [min_length, length], for
                            // packing: whole (data/packing.h), so the question moves
  int64_t distractors = 0;  // needle documents: needles of other keys
  uint64_t seed = 0;
};

struct SyntheticDocument {
  std::vector<int32_t> ids;  // exactly `length` tokens
  int64_t answer_start = 0;  // ids[answer_start..] = the answer and eos
};

// Document `index` of the dataset `options` describes. InvalidArgument when
// `length` cannot hold the prompt's fixed text and answer (naming the minimum).
absl::StatusOr<SyntheticDocument> synthetic_document(const Tokenizer& tokenizer,
                                                     const std::vector<std::string>& words,
                                                     const SyntheticOptions& options, int64_t index);

// Writes every document to the indexed dataset `prefix`, atomically: one
// document of two sequences each, the prompt and the answer with eos, so
// that a recipe's `loss: last_sequence` (data/packing.h) trains on the answer
// alone. `words`: ruler::load_word_list() (needle keys).
absl::Status write_synthetic_dataset(const Tokenizer& tokenizer, const std::vector<std::string>& words,
                                     const SyntheticOptions& options, const std::string& prefix);

}  // namespace rotor
