// TensorBoard event files: CRC-32C against its standard check values, scalars
// written and read back exactly (float32 values), and a truncated or
// corrupted file, or an unwritable directory, is an error naming the path.
// tests/trainer/tb_read.py checks the same format with an independent reader.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/common/testing.h"
#include "trainer/tensorboard.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

// gmock is not linked into trainer_test: a plain substring check.
::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

std::string fresh_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("rotor_tb_" + name);
  fs::remove_all(d);
  return d.string();
}

TEST(Crc32c, StandardCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // RFC 3720 (iSCSI) appendix B.4 test vectors.
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  // TFRecord mask of the check value, computed independently (Python).
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

// Writes a file with known contents; returns its path.
std::string write_sample(const std::string& dir) {
  auto w = TensorBoardWriter::open(dir);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return "";
  EXPECT_TRUE(w->add_scalar("train/loss", 1, 2.5, 1700000000.25).ok());
  EXPECT_TRUE(w->add_scalar("train/loss", 2, 0.1, 1700000001.5).ok());
  EXPECT_TRUE(w->add_scalar("train/lr", int64_t{1} << 40, -3e-4, 1700000002.0).ok());
  EXPECT_TRUE(w->add_scalars(7, {{"eval/loss", 1.75}, {"eval/ppl", 5.75}, {"eval/acc", 0.3}},
                             1700000003.125)
                  .ok());
  EXPECT_TRUE(w->flush().ok());
  return w->path();
}

TEST(TensorBoard, WritesAndReadsBackScalars) {
  const std::string dir = fresh_dir("roundtrip");
  const double before = static_cast<double>(std::time(nullptr));
  const std::string path = write_sample(dir);
  ASSERT_FALSE(path.empty());
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(dir));
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u) << path;

  std::string version;
  auto got = read_tensorboard_scalars(path, &version);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(version, "brain.Event:2");
  struct Want {
    int64_t step;
    double wall;
    std::string tag;
    double value;
  };
  const std::vector<Want> want = {
      {1, 1700000000.25, "train/loss", 2.5},
      {2, 1700000001.5, "train/loss", 0.1},
      {int64_t{1} << 40, 1700000002.0, "train/lr", -3e-4},
      {7, 1700000003.125, "eval/loss", 1.75},
      {7, 1700000003.125, "eval/ppl", 5.75},
      {7, 1700000003.125, "eval/acc", 0.3},
  };
  ASSERT_EQ(got->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ((*got)[i].step, want[i].step);
    EXPECT_EQ((*got)[i].wall_time, want[i].wall);  // doubles, stored exactly
    EXPECT_EQ((*got)[i].tag, want[i].tag);
    EXPECT_EQ((*got)[i].value, static_cast<float>(want[i].value));  // float32, exactly
  }

  // The first record: length, both masked CRCs, and an Event whose wall time is now.
  const std::vector<uint8_t> bytes = testing::read_file_bytes(path);
  ASSERT_GE(bytes.size(), 16u);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[i];
  ASSERT_LE(16 + len, bytes.size());
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | bytes[at + i];
    return v;
  };
  EXPECT_EQ(u32(8), masked_crc32c(bytes.data(), 8));
  EXPECT_EQ(u32(12 + len), masked_crc32c(bytes.data() + 12, len));
  // wall_time is field 1, wire type 1 (key 0x09), then 8 little-endian bytes.
  ASSERT_EQ(bytes[12], 0x09);
  uint64_t bits = 0;
  for (int i = 7; i >= 0; --i) bits = (bits << 8) | bytes[13 + i];
  double wall;
  std::memcpy(&wall, &bits, sizeof wall);
  EXPECT_GE(wall, before);
  EXPECT_LE(wall, static_cast<double>(std::time(nullptr)) + 1);
}

TEST(TensorBoard, SecondWriterInSameDirGetsItsOwnFile) {
  const std::string dir = fresh_dir("two_writers");
  auto a = TensorBoardWriter::open(dir);
  auto b = TensorBoardWriter::open(dir);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->path(), b->path());
  ASSERT_TRUE(a->add_scalar("x", 1, 1.0, 1.0).ok());
  ASSERT_TRUE(b->add_scalar("y", 2, 2.0, 2.0).ok());
  auto ra = read_tensorboard_scalars(a->path());
  auto rb = read_tensorboard_scalars(b->path());
  ASSERT_TRUE(ra.ok()) << ra.status();
  ASSERT_TRUE(rb.ok()) << rb.status();
  ASSERT_EQ(ra->size(), 1u);
  ASSERT_EQ(rb->size(), 1u);
  EXPECT_EQ((*ra)[0].tag, "x");
  EXPECT_EQ((*rb)[0].tag, "y");
}

TEST(TensorBoard, EmptyTagOrNoValuesIsAnError) {
  auto w = TensorBoardWriter::open(fresh_dir("bad_args"));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->add_scalar("", 1, 1.0, 1.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w->add_scalars(1, {}, 1.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w->add_scalars(1, {{"ok", 1.0}, {"", 2.0}}, 1.0).code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing but the file_version record was written.
  auto got = read_tensorboard_scalars(w->path());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty());
}

TEST(TensorBoard, TruncatedFileIsAnErrorNamingFileAndOffset) {
  const std::string path = write_sample(fresh_dir("truncated"));
  ASSERT_FALSE(path.empty());
  std::vector<uint8_t> bytes = testing::read_file_bytes(path);
  // The last record is the multi-value Event; find its offset by walking.
  size_t off = 0, last = 0;
  while (off < bytes.size()) {
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[off + i];
    last = off;
    off += 16 + len;
  }
  ASSERT_EQ(off, bytes.size());
  // Cut into the data CRC, the data, and the header of the last record.
  for (size_t cut : {size_t{3}, size_t{10}, size_t{bytes.size() - last - 5}}) {
    SCOPED_TRACE(cut);
    std::vector<uint8_t> t(bytes.begin(), bytes.end() - static_cast<std::ptrdiff_t>(cut));
    testing::write_file_bytes(path, t);
    auto got = read_tensorboard_scalars(path);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
    const std::string msg(got.status().message());
    EXPECT_TRUE(contains(msg, path));
    EXPECT_TRUE(contains(msg, "byte offset " + std::to_string(last)));
    EXPECT_TRUE(contains(msg, "truncated"));
  }
}

TEST(TensorBoard, FlippedByteIsAnErrorNamingFileAndOffset) {
  const std::string path = write_sample(fresh_dir("flipped"));
  ASSERT_FALSE(path.empty());
  const std::vector<uint8_t> bytes = testing::read_file_bytes(path);
  // Record 0 (file_version) then record 1 (first scalar): flip a data byte of record 1.
  uint64_t len0 = 0;
  for (int i = 7; i >= 0; --i) len0 = (len0 << 8) | bytes[i];
  const size_t rec1 = 16 + len0;
  std::vector<uint8_t> bad = bytes;
  bad[rec1 + 12 + 3] ^= 0x01;
  testing::write_file_bytes(path, bad);
  auto got = read_tensorboard_scalars(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  const std::string msg(got.status().message());
  EXPECT_TRUE(contains(msg, path));
  EXPECT_TRUE(contains(msg, "byte offset " + std::to_string(rec1)));
  EXPECT_TRUE(contains(msg, "data CRC"));

  // A flipped length byte is caught by the length CRC.
  bad = bytes;
  bad[rec1] ^= 0x40;
  testing::write_file_bytes(path, bad);
  got = read_tensorboard_scalars(path);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(contains(std::string(got.status().message()),
                       "byte offset " + std::to_string(rec1) + ": length CRC"));
}

TEST(TensorBoard, OpenUnderARegularFileIsAnErrorNamingIt) {
  const std::string dir = fresh_dir("not_a_dir");
  fs::create_directories(dir);
  const std::string file = (fs::path(dir) / "plain_file").string();
  std::ofstream(file) << "x";
  const std::string target = (fs::path(file) / "logs").string();
  auto w = TensorBoardWriter::open(target);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(contains(std::string(w.status().message()), target));

  auto r = read_tensorboard_scalars((fs::path(dir) / "missing").string());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(std::string(r.status().message()), "missing"));
}

}  // namespace
}  // namespace rotor
