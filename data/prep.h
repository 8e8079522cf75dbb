// `rotor prep`: text or JSONL -> Megatron indexed dataset (indexed_dataset.h).
//
// Documents: one per plain-text input file (its whole contents), or one per
// line of a JSONL input (the string under `jsonl_key`; blank lines are
// skipped). An input is JSONL when its name ends in ".jsonl" or when
// `jsonl_key` is given. Each document is tokenized, followed by the
// tokenizer's end-of-document (eos) token, and written as one sequence and one
// document. Token dtype: uint16 when the vocabulary fits (< 65536), else int32.
// The dataset appears atomically (IndexedDatasetWriter): on error no
// <output>.bin/.idx pair is left behind by this call.
//
// Errors name the file (and for JSONL the 1-based line): a missing or
// unreadable input, a line that is not JSON, not an object, or lacks the key
// (or whose value is not a string), a tokenizer error, a write error.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace rotor {

struct PrepOptions {
  std::string tokenizer;                 // "bytes" or "spm:PATH" (make_tokenizer)
  std::vector<std::string> inputs;       // text or JSONL files, in order
  std::string output;                    // dataset prefix: writes <output>.bin, <output>.idx
  std::optional<std::string> jsonl_key;  // given: every input is JSONL with this key
  // Seconds between progress lines (at most this often); the final summary is always printed.
  double progress_interval_s = 0.25;
};

// What prep_dataset wrote.
struct PrepStats {
  int64_t documents = 0;
  int64_t tokens = 0;  // including the eos tokens
  double seconds = 0;
};

inline constexpr const char* kDefaultJsonlKey = "text";

// Runs prep; progress lines ("\r"-updated) and a final summary line go to
// `progress`. `stats`, when given, receives the totals.
absl::Status prep_dataset(const PrepOptions& options, std::ostream& progress,
                          PrepStats* stats = nullptr);

}  // namespace rotor
