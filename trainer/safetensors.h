// safetensors files, read and written by rotor's own code.
//
// Layout (the format of huggingface/safetensors):
//   [8 bytes]  N, little-endian uint64: size of the JSON header
//   [N bytes]  JSON: {"__metadata__": {"k": "v", ...},
//                     "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
//              padded with spaces so that the data starts at a multiple of 8
//   [rest]     the byte buffer; offsets are relative to its start
// Rules checked on read (each violation is an error naming the file and the
// tensor): N within the file and at most 100 MB, valid JSON object, known
// dtype, non-negative shape, e - b == numel * element size, and the tensors
// sorted by offset tile the buffer exactly: no gap, no overlap, nothing after
// the last one. (Unaligned data from writers that do not pad is read through
// a copy.)
//
// The writer orders tensors by element size (largest first), then name, so
// the 8-byte padded header keeps every tensor aligned, and writes to a
// temporary file renamed into place only when complete.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace rotor {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "BF16", "F16", "F64", "I32", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data buffer
};

class SafetensorsFile {
 public:
  // Memory-maps `path` and validates the header and the layout.
  static absl::StatusOr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // file order
  const SafetensorsEntry* find(const std::string& name) const;

  // Copies tensor `name` into `dst` (cpu), converting F32/BF16/F16/F64 into
  // dst's float dtype (or I32/I64 into the same integer dtype). The shape must
  // have the same element count and, unless `allow_reshape`, the same dims.
  absl::Status read_into(const std::string& name, const Tensor& dst,
                         bool allow_reshape = false) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  const uint8_t* data_ = nullptr;  // start of the byte buffer
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
};

struct NamedTensor {
  std::string name;
  Tensor tensor;  // cpu; f32, bf16, f64, i32 or i64
};

// How write_safetensors stores float tensors: as they are, or converted to
// F32, BF16 or F16 (both rounded to nearest even; F16 refuses a finite value
// beyond its range, 65504, naming the tensor, rather than writing inf).
enum class SafetensorsFloat { kKeep, kF32, kBF16, kF16 };

// Writes `tensors` (float tensors stored as `floats` says; integer tensors
// keep their dtype) with `metadata`, under a temporary name renamed at the end.
absl::Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {},
                               SafetensorsFloat floats = SafetensorsFloat::kKeep);

// IEEE binary16 <-> float; float_to_half rounds to nearest even (overflow
// gives inf, NaN stays NaN).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

}  // namespace rotor
