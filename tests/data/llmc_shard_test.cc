// llm.c token shards: shards of both widths written as llm.c's write_datafile
// writes them (tests/common/llmc_datafile.h) read back, and errors.
#include "data/llmc_shard.h"

#include <gtest/gtest.h>

#include "tests/common/llmc_datafile.h"
#include "tests/common/testing.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace rotor {
namespace {

using Bytes = std::vector<uint8_t>;

std::string temp_path(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "/rotor_llmc_" + info->name() + "_" + name + ".bin";
}

using testing::read_file_bytes;
using testing::write_file_bytes;

void expect_error(const absl::Status& s, const std::string& path, const std::string& what) {
  ASSERT_FALSE(s.ok()) << "expected an error about " << what;
  const std::string msg(s.message());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

int32_t header_int(const Bytes& b, int k) {
  int32_t v;
  std::memcpy(&v, b.data() + 4 * k, 4);
  return v;
}

TEST(LlmcShard, RoundTripUint16) {
  const std::string path = temp_path("u16");
  const std::vector<uint32_t> tokens = {50256, 15496, 995, 0, 65535, 50256, 7};
  testing::write_llmc_datafile(path, tokens);
  const Bytes b = read_file_bytes(path);
  ASSERT_EQ(b.size(), 1024 + 2 * tokens.size());
  EXPECT_EQ(header_int(b, 0), 20240520);
  EXPECT_EQ(header_int(b, 1), 1);
  EXPECT_EQ(header_int(b, 2), 7);
  for (int k = 3; k < 256; ++k) EXPECT_EQ(header_int(b, k), 0) << k;
  EXPECT_EQ(b[1024], 50256 & 0xff);
  EXPECT_EQ(b[1025], 50256 >> 8);

  auto shard = LlmcShard::open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->width(), LlmcTokenWidth::kUint16);
  ASSERT_EQ(shard->num_tokens(), 7);
  std::vector<int32_t> got(tokens.size());
  ASSERT_TRUE(shard->read(0, 7, got.data()).ok());
  for (size_t k = 0; k < tokens.size(); ++k) EXPECT_EQ(got[k], static_cast<int32_t>(tokens[k]));
  int32_t one;
  ASSERT_TRUE(shard->read(6, 1, &one).ok());
  EXPECT_EQ(one, 7);
  EXPECT_EQ(shard->read(6, 2, got.data()).code(), absl::StatusCode::kOutOfRange);
}

TEST(LlmcShard, RoundTripUint32Llama3) {
  const std::string path = temp_path("u32");
  const std::vector<uint32_t> tokens = {128000, 9906, 1917, 128000, 0};
  testing::write_llmc_datafile(path, tokens, testing::LlmcModel::kLlama3);
  const Bytes b = read_file_bytes(path);
  ASSERT_EQ(b.size(), 1024 + 4 * tokens.size());
  EXPECT_EQ(header_int(b, 0), 20240801);
  EXPECT_EQ(header_int(b, 1), 7);
  auto shard = LlmcShard::open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->width(), LlmcTokenWidth::kUint32);
  for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(shard->token(k), tokens[k]);
}

// A uint32 token that does not fit an int32 id is an error naming it.
TEST(LlmcShard, Uint32TokenBeyondInt32IsAnError) {
  const std::string path = temp_path("big");
  testing::write_llmc_datafile(path, {1, 0x80000000u}, testing::LlmcModel::kLlama3);
  auto shard = LlmcShard::open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  int32_t out[2];
  expect_error(shard->read(0, 2, out), path, "token 1 = 2147483648 does not fit int32");
}

class CorruptShard : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = temp_path("c");
    testing::write_llmc_datafile(path_, {1, 2, 3, 4});
    bytes_ = read_file_bytes(path_);
  }
  absl::Status reopen() {
    write_file_bytes(path_, bytes_);
    return LlmcShard::open(path_).status();
  }
  void poke(int k, int32_t v) { std::memcpy(bytes_.data() + 4 * k, &v, 4); }
  std::string path_;
  Bytes bytes_;
};

TEST_F(CorruptShard, BadMagic) {
  poke(0, 12345);
  expect_error(reopen(), path_, "bad magic 12345");
}

TEST_F(CorruptShard, WrongVersion) {
  poke(1, 2);
  expect_error(reopen(), path_, "unsupported version 2");
}

TEST_F(CorruptShard, TruncatedTokens) {
  bytes_.resize(bytes_.size() - 1);
  expect_error(reopen(), path_, "truncated llm.c shard: 1031 bytes");
}

TEST_F(CorruptShard, TruncatedHeader) {
  bytes_.resize(100);
  expect_error(reopen(), path_, "shorter than the 1024-byte header");
}

TEST_F(CorruptShard, TrailingBytes) {
  bytes_.push_back(0);
  bytes_.push_back(0);
  expect_error(reopen(), path_, "oversized");
}

TEST_F(CorruptShard, Missing) {
  const absl::Status s = LlmcShard::open(path_ + ".nope").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  expect_error(s, path_ + ".nope", "cannot open");
}

}  // namespace
}  // namespace rotor
