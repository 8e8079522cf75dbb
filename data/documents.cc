// Opening a dataset as documents. See documents.h.
#include "data/documents.h"

#include <utility>

#include "data/indexed_dataset.h"
#include "data/llmc_shard.h"

namespace rotor {

absl::StatusOr<std::unique_ptr<DocumentSource>> open_documents(const std::string& path,
                                                               DocumentFormat format) {
  if (format == DocumentFormat::kDetect) {
    const bool llmc = path.find_first_of("*?[") != std::string::npos || looks_like_llmc_shard(path);
    format = llmc ? DocumentFormat::kLlmc : DocumentFormat::kMegatron;
  }
  if (format == DocumentFormat::kLlmc) {
    absl::StatusOr<LlmcDocuments> d = LlmcDocuments::open(path);
    if (!d.ok()) return d.status();
    return std::make_unique<LlmcDocuments>(*std::move(d));
  }
  absl::StatusOr<IndexedDataset> d = IndexedDataset::open(path);
  if (!d.ok()) return d.status();
  return std::make_unique<IndexedDataset>(*std::move(d));
}

}  // namespace rotor
