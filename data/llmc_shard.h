// llm.c token shards (karpathy/llm.c dev/data/data_common.py, llmc/dataloader.h).
//
// Layout, little-endian:
//   256 x int32 header (1024 bytes): [0] magic, [1] version, [2] token count
//   (< 2^31), the rest zero; then the tokens.
//   magic 20240520, version 1: uint16 tokens (GPT-2 style shards)
//   magic 20240801, version 7: uint32 tokens (the llama-3 variant)
// File size must be exactly 1024 + width * count. There is no document index:
// documents are delimited by a token prepended to each (GPT-2 50256,
// llama-3 128000); callers find boundaries by scanning for it.
//
// The reader memory-maps the file read-only; errors name the path and the
// problem (truncated header, bad magic, version, size mismatch).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/mapped_file.h"

namespace rotor {

inline constexpr int32_t kLlmcMagicUint16 = 20240520;
inline constexpr int32_t kLlmcVersionUint16 = 1;
inline constexpr int32_t kLlmcMagicUint32 = 20240801;
inline constexpr int32_t kLlmcVersionUint32 = 7;
inline constexpr size_t kLlmcHeaderInts = 256;
inline constexpr size_t kLlmcHeaderBytes = kLlmcHeaderInts * 4;

enum class LlmcTokenWidth { kUint16 = 2, kUint32 = 4 };

class LlmcShard {
 public:
  static absl::StatusOr<LlmcShard> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  LlmcTokenWidth width() const { return width_; }
  int64_t num_tokens() const { return num_tokens_; }
  // Token k (0 <= k < num_tokens(); aborts otherwise).
  uint32_t token(int64_t k) const;

  // Copies tokens [offset, offset + length) into out as int32 ids. Errors on
  // an out-of-range request or a uint32 token >= 2^31.
  absl::Status read(int64_t offset, int64_t length, int32_t* out) const;

 private:
  MappedFile file_;
  LlmcTokenWidth width_ = LlmcTokenWidth::kUint16;
  int64_t num_tokens_ = 0;
};

// Writes a shard (header + tokens) to path via path.tmp and a rename. Errors if
// a token does not fit the width or there are 2^31 or more tokens.
absl::Status write_llmc_shard(const std::string& path, std::span<const int64_t> tokens,
                              LlmcTokenWidth width = LlmcTokenWidth::kUint16);

}  // namespace rotor
