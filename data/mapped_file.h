// Read-only memory mapping of a whole file, shared by the token dataset
// readers (indexed_dataset.h, llmc_shard.h).
//
// Contract: open() maps the file with PROT_READ / MAP_SHARED, so a dataset
// larger than RAM works (pages are faulted in on demand). An empty file maps
// to data() == nullptr, size() == 0. Errors name the path. The mapping lives
// as long as the MappedFile (move-only).
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace rotor {

class MappedFile {
 public:
  static absl::StatusOr<MappedFile> open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void reset();

  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Writes `size` bytes to `path` atomically enough for dataset preparation:
// the bytes go to `path + ".tmp"`, are flushed, and the temporary is renamed
// over `path`. Used by writers of small files (indices, shards in tests).
absl::Status write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace rotor
