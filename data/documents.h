// Token datasets seen as documents: what packing (data/packing.h) needs from
// a dataset, whatever its format on disk.
//
//   absl::StatusOr<std::unique_ptr<DocumentSource>> d =
//       open_documents("fineweb_train_*.bin", DocumentFormat::kDetect);
//   PackedSampler::create(d->get(), options);
//
// Formats:
//   Megatron-LM indexed datasets (data/indexed_dataset.h): a document is
//     the concatenation of its sequences; `path` is the .bin/.idx prefix.
//   llm.c token shards (data/llmc_shard.h, LlmcDocuments): `path` is a shard
//     or a glob of shards; documents start at the format's BOS token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rotor {

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;

  // The path (or prefix, or glob) the documents come from, for messages.
  virtual const std::string& name() const = 0;
  virtual int64_t num_documents() const = 0;
  // Tokens of document `doc` (0 <= doc < num_documents()).
  virtual int64_t document_tokens(int64_t doc) const = 0;
  // Copies tokens [offset, offset + length) of document `doc` into `out` as
  // int32 ids. Errors: a range outside the document, a token that does not
  // fit int32 (or a dataset that holds no integer tokens).
  virtual absl::Status read_document(int64_t doc, int64_t offset, int64_t length,
                                     int32_t* out) const = 0;
  // Where the last sequence of document `doc` starts (a token offset inside
  // it): 0 for a document of one sequence, and for formats without
  // sequences. Packing with loss_on_last_sequence counts only the targets
  // from there on.
  virtual int64_t last_sequence_start(int64_t /*doc*/) const { return 0; }

 protected:
  // OutOfRange naming name(), the document and the range unless 0 <= doc <
  // num_documents() and [offset, offset + length) lies inside the document:
  // the first check of every read_document.
  absl::Status check_range(int64_t doc, int64_t offset, int64_t length) const;
};

enum class DocumentFormat {
  kDetect,    // llm.c when the path holds a glob character (* ? [) or names a
              // file that begins with an llm.c magic; otherwise Megatron
  kMegatron,  // IndexedDataset::open(path)
  kLlmc,      // LlmcDocuments::open(path)
};

// The documents of `path` in `format`. Errors are the reader's (they name the
// file and what is wrong).
absl::StatusOr<std::unique_ptr<DocumentSource>> open_documents(const std::string& path,
                                                               DocumentFormat format);

}  // namespace rotor
