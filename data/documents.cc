// Opening a dataset as documents. See documents.h.
#include "data/documents.h"

#include <utility>

#include "data/indexed_dataset.h"
#include "data/llmc_shard.h"
#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace rotor {

absl::Status DocumentSource::check_range(int64_t doc, int64_t offset, int64_t length) const {
  if (doc < 0 || doc >= num_documents()) {
    return absl::OutOfRangeError(absl::StrCat(name(), ": document ", doc, " out of range [0, ",
                                              num_documents(), ")"));
  }
  const int64_t total = document_tokens(doc);
  if (offset < 0 || length < 0 || offset > total || length > total - offset) {
    return absl::OutOfRangeError(absl::StrCat(name(), ": tokens [", offset, ", ", offset + length,
                                              ") of document ", doc, " out of range [0, ", total,
                                              ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DocumentSource>> open_documents(const std::string& path,
                                                               DocumentFormat format) {
  if (format == DocumentFormat::kDetect) {
    format = looks_like_llmc_shard(path) ? DocumentFormat::kLlmc : DocumentFormat::kMegatron;
  }
  if (format == DocumentFormat::kLlmc) {
    ROTOR_ASSIGN_OR_RETURN(LlmcDocuments d, LlmcDocuments::open(path));
    return std::make_unique<LlmcDocuments>(std::move(d));
  }
  ROTOR_ASSIGN_OR_RETURN(IndexedDataset d, IndexedDataset::open(path));
  return std::make_unique<IndexedDataset>(std::move(d));
}

}  // namespace rotor
