// Megatron-LM indexed dataset ("MMIDIDX", megatron/core/datasets/
// indexed_dataset.py), the native token format of rotor. Corpora prepared by
// Megatron-LM, NeMo or GPT-NeoX load as they are.
//
// <prefix>.bin: the tokens of every sequence, concatenated, one dtype, no header.
// <prefix>.idx, little-endian, arrays unaligned (read with memcpy):
//   offset 0   9 bytes  magic "MMIDIDX\0\0"
//   offset 9   u64      version = 1
//   offset 17  u8       dtype code: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
//                       6 float64, 7 float32, 8 uint16
//   offset 18  u64      sequence count N
//   offset 26  u64      document-index count D (= number of documents + 1)
//   offset 34  int32[N] sequence lengths (tokens)
//              int64[N] sequence pointers (byte offset of each sequence in .bin)
//              int64[D] document indices: starts at 0, non-decreasing, ends at N;
//                       document k = sequences [doc[k], doc[k+1]).
//              int8[N]  sequence modes, only in multimodal datasets (ignored).
// Codes 6/7 are swapped in legacy fairseq/NeoX; token datasets use 4 or 8 (rotor
// writes uint16 when the vocabulary fits, otherwise int32).
//
// Decisions: the reader accepts any dtype code 1..8 but read() converts only
// integer dtypes (a float dataset is an error there). The .idx must be exactly
// the size above, or that plus N bytes of sequence modes. Pointers must be
// multiples of the item size (Megatron's always are), so sequence() views are
// aligned in the page-aligned mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/documents.h"
#include "data/mapped_file.h"
#include "kernels/check.h"

namespace rotor {

// Megatron's dtype codes.
enum class TokenDType : uint8_t {
  kUint8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kFloat64 = 6,
  kFloat32 = 7,
  kUint16 = 8,
};

// Bytes per item; 0 for a code that is not one of the above.
size_t token_dtype_size(TokenDType dtype);
bool token_dtype_is_integer(TokenDType dtype);
const char* token_dtype_name(TokenDType dtype);

inline constexpr char kMmidIdxMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint64_t kMmidIdxVersion = 1;
inline constexpr size_t kMmidIdxHeaderBytes = 34;

// One sequence of a mapped dataset: `length` items of `dtype` at `data`.
struct SequenceView {
  const std::byte* data = nullptr;
  int64_t length = 0;
  TokenDType dtype = TokenDType::kUint16;

  // The items as T; aborts (broken invariant) unless T matches dtype.
  template <class T>
  std::span<const T> as() const;
  // Item k converted to int64 (integer dtypes only; aborts otherwise).
  int64_t at(int64_t k) const;
};

// As a DocumentSource (data/documents.h), document k is the concatenation of
// its sequences; name() is the prefix.
class IndexedDataset : public DocumentSource {
 public:
  // Maps <prefix>.bin and <prefix>.idx and validates the index against the
  // format above and the .bin size. Errors name the file and what is wrong.
  static absl::StatusOr<IndexedDataset> open(const std::string& prefix);

  const std::string& prefix() const { return prefix_; }
  TokenDType dtype() const { return dtype_; }
  int64_t num_sequences() const { return num_sequences_; }

  // DocumentSource.
  const std::string& name() const override { return prefix_; }
  int64_t num_documents() const override { return num_doc_indices_ - 1; }
  int64_t document_tokens(int64_t doc) const override;
  int64_t last_sequence_start(int64_t doc) const override;
  absl::Status read_document(int64_t doc, int64_t offset, int64_t length,
                             int32_t* out) const override;
  // Total tokens over all sequences.
  int64_t num_tokens() const { return num_tokens_; }

  // Sequences [first, second) of document `doc` (0 <= doc < num_documents()).
  std::pair<int64_t, int64_t> document_range(int64_t doc) const;
  int64_t sequence_length(int64_t i) const;
  // Byte offset of sequence i in .bin.
  int64_t sequence_pointer(int64_t i) const;
  // Zero-copy view of sequence i (0 <= i < num_sequences()).
  SequenceView sequence(int64_t i) const;

  // Copies tokens [offset, offset + length) of sequence i into out, converted
  // to int32 token ids. Errors: out-of-range request, a float dtype, or a
  // value that does not fit int32.
  absl::Status read(int64_t i, int64_t offset, int64_t length, int32_t* out) const;

 private:
  std::string prefix_;
  MappedFile bin_;
  MappedFile idx_;
  TokenDType dtype_ = TokenDType::kUint16;
  int64_t num_sequences_ = 0;
  int64_t num_doc_indices_ = 0;
  int64_t num_tokens_ = 0;
  const std::byte* lengths_ = nullptr;   // int32[N], unaligned
  const std::byte* pointers_ = nullptr;  // int64[N], unaligned
  const std::byte* doc_idx_ = nullptr;   // int64[D], unaligned
};

// Writes a Megatron indexed dataset. Tokens stream to <prefix>.bin.tmp as they
// are added; finalize() writes <prefix>.idx.tmp, removes any old <prefix>.idx,
// then renames .bin.tmp -> .bin and .idx.tmp -> .idx. A writer destroyed (or a
// process killed) before finalize() leaves only .tmp files, never a .bin/.idx
// pair that opens.
class IndexedDatasetWriter {
 public:
  // dtype must be an integer dtype (rotor writes kUint16 or kInt32).
  static absl::StatusOr<IndexedDatasetWriter> create(const std::string& prefix,
                                                     TokenDType dtype);

  IndexedDatasetWriter() = default;
  IndexedDatasetWriter(IndexedDatasetWriter&& other) noexcept;
  IndexedDatasetWriter& operator=(IndexedDatasetWriter&& other) noexcept;
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;
  ~IndexedDatasetWriter();

  // Appends one sequence. Fails, writing nothing, if any token does not fit
  // the dtype or the sequence is longer than INT32_MAX tokens.
  absl::Status add_sequence(std::span<const int64_t> tokens);
  // Closes the current document (the sequences added since the last call);
  // like Megatron, an empty document is recorded as such.
  void end_document();
  // Writes the index and renames both files into place. Sequences added after
  // the last end_document() form one final document. The writer is then done.
  absl::Status finalize();

  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }

 private:
  void abandon();

  std::string prefix_;
  TokenDType dtype_ = TokenDType::kUint16;
  std::FILE* bin_ = nullptr;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> pointers_;
  std::vector<int64_t> doc_idx_;
  int64_t bin_bytes_ = 0;
  std::vector<std::byte> buffer_;
};

template <class T>
std::span<const T> SequenceView::as() const {
  ROTOR_CHECK_EQ(sizeof(T), token_dtype_size(dtype)) << "SequenceView::as: wrong item type";
  return {reinterpret_cast<const T*>(data), static_cast<size_t>(length)};
}

}  // namespace rotor
