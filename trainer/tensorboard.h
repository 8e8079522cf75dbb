// TensorBoard event files: scalar metrics written in the format TensorBoard
// reads, and read back (for tests and tools).
//
// A file is a sequence of TFRecord records, each
//   uint64  length of data, little-endian
//   uint32  masked_crc32c(the 8 length bytes), little-endian
//   byte    data[length]
//   uint32  masked_crc32c(data), little-endian
// where crc32c is CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, the
// iSCSI/ext4 CRC) and masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8
// in uint32 arithmetic, c = crc32c(x).
//
// Each record's data is a serialized Event (trainer/tb_event.proto, the
// subset of TensorFlow's event.proto and summary.proto that is used, with
// TensorFlow's field numbers):
//   Event   { double wall_time = 1; int64 step = 2;
//             oneof what { string file_version = 3; Summary summary = 5; } }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; oneof value { float simple_value = 2; } }
// The first record is an Event with file_version "brain.Event:2" and the wall
// time of open(); every later record is an Event holding a Summary of scalar
// Values. Values are stored as float32 (a double outside the float range
// becomes +-inf; NaN stays NaN).
//
// The file is <dir>/events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>;
// it is created exclusively, and if that name exists already (a second writer
// in the same second and process) ".1", ".2", ... is appended; TensorBoard
// reads every file whose name contains "tfevents". Each record is handed to the
// kernel with one write(2) as soon as it is added, so a reader (TensorBoard
// polls files that are being appended) sees whole records and a killed run
// loses nothing it added; flush() additionally fsyncs the file to disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rotor {

// CRC-32C of n bytes (the standard check value: crc32c("123456789") = 0xE3069283).
uint32_t crc32c(const void* data, size_t n);
// The TFRecord mask of crc32c(data, n) (see above).
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  // Creates `dir` (and its parents) and a new event file in it, and writes the
  // file_version record. Errors name the directory or file.
  static absl::StatusOr<TensorBoardWriter> open(const std::string& dir);

  TensorBoardWriter(TensorBoardWriter&& other) noexcept;
  TensorBoardWriter& operator=(TensorBoardWriter&& other) noexcept;
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;
  ~TensorBoardWriter();  // closes the file

  // One Event holding one Value. `tag` must not be empty.
  absl::Status add_scalar(const std::string& tag, int64_t step, double value,
                          double wall_time_s);
  // One Event holding one Summary with a Value per pair, in order. `values`
  // must not be empty and no tag may be empty.
  absl::Status add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                           double wall_time_s);
  // fsyncs the file (records are already written to the kernel by each add).
  absl::Status flush();

  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  absl::Status write_record(const std::string& data);

  int fd_ = -1;
  std::string path_;
};

// One scalar read back from an event file.
struct TbScalar {
  int64_t step = 0;
  double wall_time = 0;
  std::string tag;
  float value = 0;
};

// Every simple_value in the file's Events, in file order (a multi-value Event
// gives one TbScalar per Value, sharing step and wall_time). Every record's
// length and data CRCs are checked and every Event must parse; an error (a
// truncated record included) names the file and the record's byte offset.
// If `file_version` is non-null it receives the file_version of the first
// Event that has one ("" if none does).
absl::StatusOr<std::vector<TbScalar>> read_tensorboard_scalars(const std::string& path,
                                                               std::string* file_version = nullptr);

}  // namespace rotor
