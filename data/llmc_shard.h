// llm.c token shards (karpathy/llm.c dev/data/data_common.py, llmc/dataloader.h).
//
// Layout, little-endian:
//   256 x int32 header (1024 bytes): [0] magic, [1] version, [2] token count
//   (< 2^31), the rest zero; then the tokens.
//   magic 20240520, version 1: uint16 tokens (GPT-2 style shards)
//   magic 20240801, version 7: uint32 tokens (the llama-3 variant)
// File size must be exactly 1024 + width * count. There is no document index:
// llm.c's scripts put a BOS token before every document (GPT-2 shards: 50256
// <|endoftext|>; llama-3 shards: 128000 <|begin_of_text|>), and cut shards at
// a token count, so a document may continue in the next shard.
// LlmcDocuments finds the documents of one or more shards by scanning for it.
//
// The reader memory-maps the file read-only; errors name the path and the
// problem (truncated header, bad magic, version, size mismatch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/documents.h"
#include "data/mapped_file.h"

namespace rotor {

inline constexpr int32_t kLlmcMagicUint16 = 20240520;
inline constexpr int32_t kLlmcVersionUint16 = 1;
inline constexpr int32_t kLlmcMagicUint32 = 20240801;
inline constexpr int32_t kLlmcVersionUint32 = 7;
inline constexpr size_t kLlmcHeaderInts = 256;
inline constexpr size_t kLlmcHeaderBytes = kLlmcHeaderInts * 4;

inline constexpr uint32_t kLlmcBosUint16 = 50256;   // GPT-2 <|endoftext|>
inline constexpr uint32_t kLlmcBosUint32 = 128000;  // llama-3 <|begin_of_text|>

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

// The documents of llm.c shards (a DocumentSource, data/documents.h). The
// shards, in sorted path order, form one token stream; a document starts at
// every BOS token of the shards' width (kLlmcBos*) and at the start of the
// stream, and runs to the next start, across shard ends. The BOS token is the
// first token of its document, as llm.c trains on it.
class LlmcDocuments : public DocumentSource {
 public:
  // `path`: one shard, or a glob (* ? [...], glob(3)) of shards. Scans every
  // token once. Errors: no file matches the glob; a shard LlmcShard::open
  // refuses; shards of different widths; no tokens at all.
  static absl::StatusOr<LlmcDocuments> open(const std::string& path);

  const std::vector<LlmcShard>& shards() const { return shards_; }
  LlmcTokenWidth width() const { return shards_.front().width(); }
  uint32_t bos() const { return width() == LlmcTokenWidth::kUint16 ? kLlmcBosUint16 : kLlmcBosUint32; }

  // DocumentSource.
  const std::string& name() const override { return name_; }
  int64_t num_documents() const override { return static_cast<int64_t>(doc_start_.size()) - 1; }
  int64_t document_tokens(int64_t doc) const override;
  absl::Status read_document(int64_t doc, int64_t offset, int64_t length,
                             int32_t* out) const override;

 private:
  std::string name_;
  std::vector<LlmcShard> shards_;
  std::vector<int64_t> shard_start_;  // stream offset of each shard; size shards + 1
  std::vector<int64_t> doc_start_;    // stream offset of each document; size documents + 1
};

// True when `path` names llm.c shards: a glob (* ? [) of them, or a file
// that begins with an llm.c magic.
bool looks_like_llmc_shard(const std::string& path);

}  // namespace rotor
