#include "data/llmc_shard.h"

#include <glob.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "kernels/status.h"

namespace rotor {

namespace {

absl::Status corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what));
}

}  // namespace

absl::StatusOr<LlmcShard> LlmcShard::open(const std::string& path) {
  auto file = MappedFile::open(path);
  if (!file.ok()) return file.status();
  LlmcShard shard;
  shard.file_ = *std::move(file);
  const size_t size = shard.file_.size();
  if (size < kLlmcHeaderBytes) {
    return corrupt(path, absl::StrCat("truncated llm.c shard: ", size,
                                      " bytes, shorter than the 1024-byte header"));
  }
  int32_t header[3];
  std::memcpy(header, shard.file_.data(), sizeof(header));
  int32_t want_version = 0;
  if (header[0] == kLlmcMagicUint16) {
    shard.width_ = LlmcTokenWidth::kUint16;
    want_version = kLlmcVersionUint16;
  } else if (header[0] == kLlmcMagicUint32) {
    shard.width_ = LlmcTokenWidth::kUint32;
    want_version = kLlmcVersionUint32;
  } else {
    return corrupt(path, absl::StrCat("bad magic ", header[0], ": not an llm.c token shard (",
                                      "expected ", kLlmcMagicUint16, " or ", kLlmcMagicUint32,
                                      ")"));
  }
  if (header[1] != want_version) {
    return corrupt(path, absl::StrCat("unsupported version ", header[1], " for magic ",
                                      header[0], " (expected ", want_version, ")"));
  }
  if (header[2] < 0) {
    return corrupt(path, absl::StrCat("negative token count ", header[2]));
  }
  shard.num_tokens_ = header[2];
  const uint64_t expected =
      kLlmcHeaderBytes + static_cast<uint64_t>(shard.num_tokens_) * static_cast<int>(shard.width_);
  if (size != expected) {
    return corrupt(path, absl::StrCat(size < expected ? "truncated" : "oversized",
                                      " llm.c shard: ", size, " bytes, but the header's ",
                                      shard.num_tokens_, " tokens need ", expected));
  }
  return shard;
}

uint32_t LlmcShard::token(int64_t k) const {
  ROTOR_CHECK(k >= 0 && k < num_tokens_) << "token " << k << " of " << num_tokens_;
  const std::byte* p = file_.data() + kLlmcHeaderBytes;
  if (width_ == LlmcTokenWidth::kUint16) {
    uint16_t v;
    std::memcpy(&v, p + 2 * k, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, p + 4 * k, 4);
  return v;
}

absl::Status LlmcShard::read(int64_t offset, int64_t length, int32_t* out) const {
  if (offset < 0 || length < 0 || offset > num_tokens_ || length > num_tokens_ - offset) {
    return absl::OutOfRangeError(absl::StrCat(path(), ": tokens [", offset, ", ",
                                              offset + length, ") out of range [0, ",
                                              num_tokens_, ")"));
  }
  for (int64_t k = 0; k < length; ++k) {
    const uint32_t t = token(offset + k);
    if (t > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      return absl::OutOfRangeError(
          absl::StrCat(path(), ": token ", offset + k, " = ", t, " does not fit int32"));
    }
    out[k] = static_cast<int32_t>(t);
  }
  return absl::OkStatus();
}

namespace {

bool is_glob(const std::string& path) { return path.find_first_of("*?[") != std::string::npos; }

// The files of `pattern` in sorted (byte) order; `pattern` itself when it
// holds no glob character.
absl::StatusOr<std::vector<std::string>> expand_shards(const std::string& pattern) {
  if (!is_glob(pattern)) return std::vector<std::string>{pattern};
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  std::vector<std::string> paths;
  for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) paths.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && paths.empty()))
    return absl::NotFoundError(absl::StrCat(pattern, ": no file matches"));
  if (rc != 0) return absl::NotFoundError(absl::StrCat(pattern, ": cannot read the directory"));
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace

absl::StatusOr<LlmcDocuments> LlmcDocuments::open(const std::string& path) {
  ROTOR_ASSIGN_OR_RETURN(std::vector<std::string> paths, expand_shards(path));
  LlmcDocuments d;
  d.name_ = path;
  d.shard_start_.push_back(0);
  for (const std::string& p : paths) {
    ROTOR_ASSIGN_OR_RETURN(LlmcShard shard, LlmcShard::open(p));
    if (!d.shards_.empty() && shard.width() != d.width()) {
      return absl::InvalidArgumentError(absl::StrCat(
          p, ": uint", 8 * static_cast<int>(shard.width()), " tokens, but ", d.shards_[0].path(),
          " has uint", 8 * static_cast<int>(d.width()), " (", path, " mixes llm.c formats)"));
    }
    d.shards_.push_back(std::move(shard));
    d.shard_start_.push_back(d.shard_start_.back() + d.shards_.back().num_tokens());
  }
  const int64_t total = d.shard_start_.back();
  if (total == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no tokens"));
  const uint32_t bos = d.bos();
  d.doc_start_.push_back(0);
  for (size_t s = 0; s < d.shards_.size(); ++s) {
    const LlmcShard& shard = d.shards_[s];
    for (int64_t k = 0; k < shard.num_tokens(); ++k) {
      const int64_t at = d.shard_start_[s] + k;
      if (at > 0 && shard.token(k) == bos) d.doc_start_.push_back(at);
    }
  }
  d.doc_start_.push_back(total);
  return d;
}

int64_t LlmcDocuments::document_tokens(int64_t doc) const {
  ROTOR_CHECK(doc >= 0 && doc < num_documents()) << "document " << doc << " of " << num_documents();
  return doc_start_[static_cast<size_t>(doc) + 1] - doc_start_[static_cast<size_t>(doc)];
}

absl::Status LlmcDocuments::read_document(int64_t doc, int64_t offset, int64_t length,
                                          int32_t* out) const {
  ROTOR_RETURN_IF_ERROR(check_range(doc, offset, length));
  int64_t at = doc_start_[static_cast<size_t>(doc)] + offset;  // stream offset
  size_t s = static_cast<size_t>(
      std::upper_bound(shard_start_.begin(), shard_start_.end(), at) - shard_start_.begin() - 1);
  for (int64_t filled = 0; filled < length; ++s) {
    const int64_t local = at - shard_start_[s];
    const int64_t take = std::min(shards_[s].num_tokens() - local, length - filled);
    if (take <= 0) continue;  // an empty shard
    ROTOR_RETURN_IF_ERROR(shards_[s].read(local, take, out + filled));
    filled += take;
    at += take;
  }
  return absl::OkStatus();
}

bool looks_like_llmc_shard(const std::string& path) {
  if (is_glob(path)) return true;
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  if (!in.read(reinterpret_cast<char*>(&magic), sizeof magic)) return false;
  return magic == kLlmcMagicUint16 || magic == kLlmcMagicUint32;
}

}  // namespace rotor
