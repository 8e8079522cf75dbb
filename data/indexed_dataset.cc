#include "data/indexed_dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace rotor {

namespace {

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
void append(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

// Inclusive range of values representable by an integer dtype.
std::pair<int64_t, int64_t> integer_range(TokenDType dtype) {
  switch (dtype) {
    case TokenDType::kUint8: return {0, 255};
    case TokenDType::kInt8: return {-128, 127};
    case TokenDType::kInt16: return {-32768, 32767};
    case TokenDType::kUint16: return {0, 65535};
    case TokenDType::kInt32:
      return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    default:
      return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  }
}

int64_t load_integer(const std::byte* p, TokenDType dtype) {
  switch (dtype) {
    case TokenDType::kUint8: return load<uint8_t>(p);
    case TokenDType::kInt8: return load<int8_t>(p);
    case TokenDType::kInt16: return load<int16_t>(p);
    case TokenDType::kUint16: return load<uint16_t>(p);
    case TokenDType::kInt32: return load<int32_t>(p);
    case TokenDType::kInt64: return load<int64_t>(p);
    default: ROTOR_CHECK(false) << "not an integer dtype: " << static_cast<int>(dtype);
  }
  return 0;
}

void store_integer(std::byte* p, int64_t v, TokenDType dtype) {
  switch (dtype) {
    case TokenDType::kUint8: { auto x = static_cast<uint8_t>(v); std::memcpy(p, &x, 1); break; }
    case TokenDType::kInt8: { auto x = static_cast<int8_t>(v); std::memcpy(p, &x, 1); break; }
    case TokenDType::kInt16: { auto x = static_cast<int16_t>(v); std::memcpy(p, &x, 2); break; }
    case TokenDType::kUint16: { auto x = static_cast<uint16_t>(v); std::memcpy(p, &x, 2); break; }
    case TokenDType::kInt32: { auto x = static_cast<int32_t>(v); std::memcpy(p, &x, 4); break; }
    case TokenDType::kInt64: std::memcpy(p, &v, 8); break;
    default: ROTOR_CHECK(false) << "not an integer dtype: " << static_cast<int>(dtype);
  }
}

absl::Status corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what));
}

}  // namespace

size_t token_dtype_size(TokenDType dtype) {
  switch (dtype) {
    case TokenDType::kUint8:
    case TokenDType::kInt8: return 1;
    case TokenDType::kInt16:
    case TokenDType::kUint16: return 2;
    case TokenDType::kInt32:
    case TokenDType::kFloat32: return 4;
    case TokenDType::kInt64:
    case TokenDType::kFloat64: return 8;
  }
  return 0;
}

bool token_dtype_is_integer(TokenDType dtype) {
  return token_dtype_size(dtype) != 0 && dtype != TokenDType::kFloat32 &&
         dtype != TokenDType::kFloat64;
}

const char* token_dtype_name(TokenDType dtype) {
  switch (dtype) {
    case TokenDType::kUint8: return "uint8";
    case TokenDType::kInt8: return "int8";
    case TokenDType::kInt16: return "int16";
    case TokenDType::kInt32: return "int32";
    case TokenDType::kInt64: return "int64";
    case TokenDType::kFloat64: return "float64";
    case TokenDType::kFloat32: return "float32";
    case TokenDType::kUint16: return "uint16";
  }
  return "unknown";
}

int64_t SequenceView::at(int64_t k) const {
  ROTOR_CHECK(k >= 0 && k < length) << "token " << k << " of " << length;
  return load_integer(data + k * static_cast<int64_t>(token_dtype_size(dtype)), dtype);
}

// ---------------------------------------------------------------- reader

absl::StatusOr<IndexedDataset> IndexedDataset::open(const std::string& prefix) {
  IndexedDataset ds;
  ds.prefix_ = prefix;
  const std::string idx_path = prefix + ".idx";
  const std::string bin_path = prefix + ".bin";
  {
    auto idx = MappedFile::open(idx_path);
    if (!idx.ok()) return idx.status();
    ds.idx_ = *std::move(idx);
    auto bin = MappedFile::open(bin_path);
    if (!bin.ok()) return bin.status();
    ds.bin_ = *std::move(bin);
  }
  const std::byte* p = ds.idx_.data();
  const uint64_t idx_size = ds.idx_.size();
  if (idx_size < kMmidIdxHeaderBytes) {
    return corrupt(idx_path, absl::StrCat("truncated index: ", idx_size,
                                          " bytes, shorter than the 34-byte header"));
  }
  if (std::memcmp(p, kMmidIdxMagic, sizeof(kMmidIdxMagic)) != 0) {
    return corrupt(idx_path, "bad magic: not a Megatron MMIDIDX index");
  }
  const uint64_t version = load<uint64_t>(p + 9);
  if (version != kMmidIdxVersion) {
    return corrupt(idx_path, absl::StrCat("unsupported version ", version, " (expected 1)"));
  }
  const uint8_t code = load<uint8_t>(p + 17);
  ds.dtype_ = static_cast<TokenDType>(code);
  const uint64_t item = token_dtype_size(ds.dtype_);
  if (item == 0) {
    return corrupt(idx_path, absl::StrCat("unknown dtype code ", static_cast<int>(code),
                                          " (expected 1..8)"));
  }
  const uint64_t n = load<uint64_t>(p + 18);
  const uint64_t d = load<uint64_t>(p + 26);
  // Bound the counts by the file size before multiplying, so nothing overflows.
  const uint64_t body = idx_size - kMmidIdxHeaderBytes;
  if (n > body / 12 || d > body / 8 || 12 * n + 8 * d > body) {
    return corrupt(idx_path,
                   absl::StrCat("truncated index: ", idx_size, " bytes cannot hold ", n,
                                " sequences and ", d, " document indices"));
  }
  const uint64_t expected = kMmidIdxHeaderBytes + 12 * n + 8 * d;
  if (idx_size != expected && idx_size != expected + n) {
    return corrupt(idx_path, absl::StrCat("index size ", idx_size, " does not match ", n,
                                          " sequences and ", d, " document indices (expected ",
                                          expected, " bytes, or ", expected + n,
                                          " with sequence modes)"));
  }
  if (d == 0) return corrupt(idx_path, "document index is empty (must start with 0)");
  ds.num_sequences_ = static_cast<int64_t>(n);
  ds.num_doc_indices_ = static_cast<int64_t>(d);
  ds.lengths_ = p + kMmidIdxHeaderBytes;
  ds.pointers_ = ds.lengths_ + 4 * n;
  ds.doc_idx_ = ds.pointers_ + 8 * n;

  const int64_t bin_size = static_cast<int64_t>(ds.bin_.size());
  int64_t total = 0;
  for (int64_t i = 0; i < ds.num_sequences_; ++i) {
    const int64_t len = load<int32_t>(ds.lengths_ + 4 * i);
    const int64_t ptr = load<int64_t>(ds.pointers_ + 8 * i);
    if (len < 0) {
      return corrupt(idx_path, absl::StrCat("sequence ", i, " has negative length ", len));
    }
    if (ptr < 0 || ptr % static_cast<int64_t>(item) != 0) {
      return corrupt(idx_path, absl::StrCat("sequence ", i, " has bad byte pointer ", ptr,
                                            " (must be a non-negative multiple of ", item,
                                            ")"));
    }
    const int64_t bytes = len * static_cast<int64_t>(item);
    if (ptr > bin_size || bytes > bin_size - ptr) {
      return corrupt(bin_path, absl::StrCat("sequence ", i, " (byte pointer ", ptr, ", ", len,
                                            " tokens of ", token_dtype_name(ds.dtype_),
                                            ") runs past the end of the .bin (", bin_size,
                                            " bytes): truncated .bin or corrupt index"));
    }
    total += len;
  }
  ds.num_tokens_ = total;

  int64_t prev = load<int64_t>(ds.doc_idx_);
  if (prev != 0) {
    return corrupt(idx_path, absl::StrCat("document index starts at ", prev, ", not 0"));
  }
  for (int64_t k = 1; k < ds.num_doc_indices_; ++k) {
    const int64_t cur = load<int64_t>(ds.doc_idx_ + 8 * k);
    if (cur < prev) {
      return corrupt(idx_path, absl::StrCat("document index not monotonic: entry ", k, " = ",
                                            cur, " < entry ", k - 1, " = ", prev));
    }
    prev = cur;
  }
  if (prev != ds.num_sequences_) {
    return corrupt(idx_path, absl::StrCat("document index ends at ", prev,
                                          ", not at the sequence count ", ds.num_sequences_));
  }
  return ds;
}

std::pair<int64_t, int64_t> IndexedDataset::document_range(int64_t doc) const {
  ROTOR_CHECK(doc >= 0 && doc < num_documents()) << "document " << doc << " of "
                                                 << num_documents();
  return {load<int64_t>(doc_idx_ + 8 * doc), load<int64_t>(doc_idx_ + 8 * (doc + 1))};
}

int64_t IndexedDataset::sequence_length(int64_t i) const {
  ROTOR_CHECK(i >= 0 && i < num_sequences_) << "sequence " << i << " of " << num_sequences_;
  return load<int32_t>(lengths_ + 4 * i);
}

int64_t IndexedDataset::sequence_pointer(int64_t i) const {
  ROTOR_CHECK(i >= 0 && i < num_sequences_) << "sequence " << i << " of " << num_sequences_;
  return load<int64_t>(pointers_ + 8 * i);
}

SequenceView IndexedDataset::sequence(int64_t i) const {
  SequenceView v;
  v.length = sequence_length(i);
  v.data = bin_.data() == nullptr ? nullptr : bin_.data() + sequence_pointer(i);
  v.dtype = dtype_;
  return v;
}

int64_t IndexedDataset::document_tokens(int64_t doc) const {
  const auto [a, b] = document_range(doc);
  int64_t n = 0;
  for (int64_t i = a; i < b; ++i) n += sequence_length(i);
  return n;
}

int64_t IndexedDataset::last_sequence_start(int64_t doc) const {
  const auto [a, b] = document_range(doc);
  int64_t n = 0;
  for (int64_t i = a; i + 1 < b; ++i) n += sequence_length(i);
  return n;
}

absl::Status IndexedDataset::read_document(int64_t doc, int64_t offset, int64_t length,
                                           int32_t* out) const {
  ROTOR_RETURN_IF_ERROR(check_range(doc, offset, length));
  const auto [a, b] = document_range(doc);
  int64_t filled = 0;
  for (int64_t seq = a; seq < b && filled < length; ++seq) {
    const int64_t len = sequence_length(seq);
    if (offset >= len) {
      offset -= len;
      continue;
    }
    const int64_t take = std::min(len - offset, length - filled);
    ROTOR_RETURN_IF_ERROR(read(seq, offset, take, out + filled));
    filled += take;
    offset = 0;
  }
  return absl::OkStatus();
}

absl::Status IndexedDataset::read(int64_t i, int64_t offset, int64_t length,
                                  int32_t* out) const {
  if (i < 0 || i >= num_sequences_) {
    return absl::OutOfRangeError(absl::StrCat(prefix_, ": sequence ", i, " out of range [0, ",
                                              num_sequences_, ")"));
  }
  const SequenceView v = sequence(i);
  if (offset < 0 || length < 0 || offset > v.length || length > v.length - offset) {
    return absl::OutOfRangeError(absl::StrCat(prefix_, ": tokens [", offset, ", ",
                                              offset + length, ") of sequence ", i,
                                              " out of range [0, ", v.length, ")"));
  }
  if (!token_dtype_is_integer(dtype_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        prefix_, ": dtype ", token_dtype_name(dtype_), " does not hold token ids"));
  }
  const int64_t item = static_cast<int64_t>(token_dtype_size(dtype_));
  const std::byte* src = v.data + offset * item;
  if (dtype_ == TokenDType::kInt32) {
    if (length > 0) std::memcpy(out, src, static_cast<size_t>(length) * 4);
    return absl::OkStatus();
  }
  for (int64_t k = 0; k < length; ++k) {
    const int64_t t = load_integer(src + k * item, dtype_);
    if (t < std::numeric_limits<int32_t>::min() || t > std::numeric_limits<int32_t>::max()) {
      return absl::OutOfRangeError(absl::StrCat(prefix_, ": token ", offset + k,
                                                " of sequence ", i, " = ", t,
                                                " does not fit int32"));
    }
    out[k] = static_cast<int32_t>(t);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- writer

absl::StatusOr<IndexedDatasetWriter> IndexedDatasetWriter::create(const std::string& prefix,
                                                                  TokenDType dtype) {
  if (!token_dtype_is_integer(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, ": cannot write token dataset of dtype code ",
                     static_cast<int>(dtype), " (need an integer dtype)"));
  }
  IndexedDatasetWriter w;
  w.prefix_ = prefix;
  w.dtype_ = dtype;
  const std::string tmp = prefix + ".bin.tmp";
  w.bin_ = std::fopen(tmp.c_str(), "wb");
  if (w.bin_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  }
  w.doc_idx_.push_back(0);
  return w;
}

IndexedDatasetWriter::IndexedDatasetWriter(IndexedDatasetWriter&& o) noexcept
    : prefix_(std::move(o.prefix_)),
      dtype_(o.dtype_),
      bin_(std::exchange(o.bin_, nullptr)),
      lengths_(std::move(o.lengths_)),
      pointers_(std::move(o.pointers_)),
      doc_idx_(std::move(o.doc_idx_)),
      bin_bytes_(o.bin_bytes_),
      buffer_(std::move(o.buffer_)) {}

IndexedDatasetWriter& IndexedDatasetWriter::operator=(IndexedDatasetWriter&& o) noexcept {
  if (this != &o) {
    abandon();
    prefix_ = std::move(o.prefix_);
    dtype_ = o.dtype_;
    bin_ = std::exchange(o.bin_, nullptr);
    lengths_ = std::move(o.lengths_);
    pointers_ = std::move(o.pointers_);
    doc_idx_ = std::move(o.doc_idx_);
    bin_bytes_ = o.bin_bytes_;
    buffer_ = std::move(o.buffer_);
  }
  return *this;
}

IndexedDatasetWriter::~IndexedDatasetWriter() { abandon(); }

void IndexedDatasetWriter::abandon() {
  if (bin_ != nullptr) {
    std::fclose(bin_);
    bin_ = nullptr;
    std::remove((prefix_ + ".bin.tmp").c_str());
  }
}

absl::Status IndexedDatasetWriter::add_sequence(std::span<const int64_t> tokens) {
  if (bin_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(prefix_, ": add_sequence on a finalized or failed writer"));
  }
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix_, ": sequence of ", tokens.size(), " tokens exceeds the int32 length field"));
  }
  const auto [lo, hi] = integer_range(dtype_);
  const size_t item = token_dtype_size(dtype_);
  buffer_.resize(tokens.size() * item);
  for (size_t k = 0; k < tokens.size(); ++k) {
    if (tokens[k] < lo || tokens[k] > hi) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix_, ": token ", tokens[k], " at position ", k, " of sequence ", lengths_.size(),
          " does not fit ", token_dtype_name(dtype_), " [", lo, ", ", hi, "]"));
    }
    store_integer(buffer_.data() + k * item, tokens[k], dtype_);
  }
  if (!buffer_.empty() && std::fwrite(buffer_.data(), 1, buffer_.size(), bin_) != buffer_.size()) {
    const std::string msg = absl::StrCat(prefix_, ".bin.tmp: write failed: ", std::strerror(errno));
    abandon();
    return absl::DataLossError(msg);
  }
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
  pointers_.push_back(bin_bytes_);
  bin_bytes_ += static_cast<int64_t>(buffer_.size());
  return absl::OkStatus();
}

void IndexedDatasetWriter::end_document() { doc_idx_.push_back(num_sequences()); }

absl::Status IndexedDatasetWriter::finalize() {
  if (bin_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(prefix_, ": finalize on a finalized or failed writer"));
  }
  if (doc_idx_.back() != num_sequences()) end_document();
  const std::string bin_tmp = prefix_ + ".bin.tmp";
  const bool flushed = std::fflush(bin_) == 0;
  const bool closed = std::fclose(bin_) == 0;
  bin_ = nullptr;
  if (!flushed || !closed) {
    std::remove(bin_tmp.c_str());
    return absl::DataLossError(absl::StrCat(bin_tmp, ": flush failed: ", std::strerror(errno)));
  }
  std::vector<std::byte> idx;
  idx.reserve(kMmidIdxHeaderBytes + 12 * lengths_.size() + 8 * doc_idx_.size());
  const auto* magic = reinterpret_cast<const std::byte*>(kMmidIdxMagic);
  idx.insert(idx.end(), magic, magic + sizeof(kMmidIdxMagic));
  append<uint64_t>(idx, kMmidIdxVersion);
  append<uint8_t>(idx, static_cast<uint8_t>(dtype_));
  append<uint64_t>(idx, lengths_.size());
  append<uint64_t>(idx, doc_idx_.size());
  for (int32_t v : lengths_) append(idx, v);
  for (int64_t v : pointers_) append(idx, v);
  for (int64_t v : doc_idx_) append(idx, v);

  const std::string idx_path = prefix_ + ".idx";
  const std::string bin_path = prefix_ + ".bin";
  // Old index first: between the two renames there must be no .idx that could
  // describe the new .bin wrongly.
  if (std::remove(idx_path.c_str()) != 0 && errno != ENOENT) {
    std::remove(bin_tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat(idx_path, ": cannot remove old index: ", std::strerror(errno)));
  }
  if (std::rename(bin_tmp.c_str(), bin_path.c_str()) != 0) {
    const std::string msg =
        absl::StrCat(bin_tmp, ": cannot rename to ", bin_path, ": ", std::strerror(errno));
    std::remove(bin_tmp.c_str());
    return absl::UnavailableError(msg);
  }
  return write_file_atomically(idx_path, idx.data(), idx.size());
}

}  // namespace rotor
