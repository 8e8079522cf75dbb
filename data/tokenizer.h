// Tokenizers for `rotor prep`: text -> token ids and back.
//
//   make_tokenizer("bytes")      ids 0..255 are the bytes of the UTF-8 text; then
//                                256 <bos>, 257 <eos>, 258 <pad>, 259 <unk>;
//                                vocab_size 260 (recipes/demo/base.yaml assumes it).
//   make_tokenizer("spm:PATH")   a SentencePiece model (libsentencepiece), e.g.
//                                Llama-2's tokenizer.model; bos/eos ids from the
//                                model (-1 when the model has none).
//
// Errors: an unknown spec, a missing or invalid model file (naming the path).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rotor {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids of `text` (no bos/eos added).
  virtual absl::StatusOr<std::vector<int32_t>> encode(const std::string& text) const = 0;
  // The text of `ids`. Errors: an id outside [0, vocab_size()).
  virtual absl::StatusOr<std::string> decode(std::span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1: none
  virtual int32_t eos_id() const = 0;  // -1: none
  // The spec it was made from ("bytes", "spm:PATH").
  virtual std::string spec() const = 0;
};

// The byte tokenizer's special ids.
inline constexpr int32_t kBytesBos = 256;
inline constexpr int32_t kBytesEos = 257;
inline constexpr int32_t kBytesPad = 258;
inline constexpr int32_t kBytesUnk = 259;
inline constexpr int32_t kBytesVocabSize = 260;

// "bytes" or "spm:PATH" (see above).
absl::StatusOr<std::unique_ptr<Tokenizer>> make_tokenizer(const std::string& spec);

}  // namespace rotor
