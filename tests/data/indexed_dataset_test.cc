// Megatron MMIDIDX reader/writer: round trips, the exact byte layout Megatron
// writes, and one clear error per kind of corruption.
#include "data/indexed_dataset.h"

#include <gtest/gtest.h>

#include "tests/common/testing.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace rotor {
namespace {

using Bytes = std::vector<uint8_t>;
using Doc = std::vector<std::vector<int64_t>>;

std::string temp_prefix(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "/rotor_idx_" + info->name() + "_" + name;
}

using testing::read_file_bytes;
using testing::write_file_bytes;

template <class T>
void put(Bytes& out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // the test machine is little-endian, as is the format
  out.insert(out.end(), b, b + sizeof(T));
}

void write_dataset(const std::string& prefix, TokenDType dtype, const std::vector<Doc>& docs) {
  auto w = IndexedDatasetWriter::create(prefix, dtype);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const Doc& doc : docs) {
    for (const auto& seq : doc) ASSERT_TRUE(w->add_sequence(seq).ok());
    w->end_document();
  }
  ASSERT_TRUE(w->finalize().ok());
}

void expect_error(const absl::Status& s, const std::string& path, const std::string& what) {
  ASSERT_FALSE(s.ok()) << "expected an error about " << what;
  const std::string msg(s.message());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

std::vector<Doc> sample_docs(int64_t base) {
  return {{{base + 1, base + 2, base + 3}, {base + 4}},
          {{base + 5, base + 6}},
          {},  // an empty document is kept, as in Megatron
          {{base + 7}, {base + 8, base + 9, base + 10}, {}}};
}

void check_round_trip(TokenDType dtype, int64_t base) {
  const std::string prefix = temp_prefix("rt");
  const std::vector<Doc> docs = sample_docs(base);
  write_dataset(prefix, dtype, docs);
  auto ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->dtype(), dtype);
  ASSERT_EQ(ds->num_documents(), static_cast<int64_t>(docs.size()));
  EXPECT_EQ(ds->num_sequences(), 6);
  EXPECT_EQ(ds->num_tokens(), 10);
  int64_t seq = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    const auto [first, last] = ds->document_range(static_cast<int64_t>(d));
    EXPECT_EQ(first, seq);
    ASSERT_EQ(last - first, static_cast<int64_t>(docs[d].size())) << "document " << d;
    for (const auto& want : docs[d]) {
      const int64_t n = static_cast<int64_t>(want.size());
      ASSERT_EQ(ds->sequence_length(seq), n);
      std::vector<int32_t> got(want.size());
      ASSERT_TRUE(ds->read(seq, 0, n, got.data()).ok());
      for (int64_t k = 0; k < n; ++k) {
        EXPECT_EQ(got[k], want[k]);
        EXPECT_EQ(ds->sequence(seq).at(k), want[k]);
      }
      ++seq;
    }
  }
  // A window inside a sequence, and requests past its end.
  int32_t two[2];
  ASSERT_TRUE(ds->read(4, 1, 2, two).ok());
  EXPECT_EQ(two[0], base + 9);
  EXPECT_EQ(two[1], base + 10);
  EXPECT_EQ(ds->read(4, 2, 2, two).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(ds->read(5, 0, 0, two).ok());  // the empty sequence
  EXPECT_EQ(ds->read(5, 0, 1, two).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ds->read(6, 0, 0, two).code(), absl::StatusCode::kOutOfRange);
}

TEST(IndexedDataset, RoundTripUint16) {
  check_round_trip(TokenDType::kUint16, 65000);  // tokens up to 65010 fit uint16 only
  const std::string prefix = temp_prefix("rt");
  auto ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok());
  const auto view = ds->sequence(0).as<uint16_t>();
  ASSERT_EQ(view.size(), 3u);
  EXPECT_EQ(view[2], 65003);
}

TEST(IndexedDataset, RoundTripInt32) {
  check_round_trip(TokenDType::kInt32, 128000);  // Llama-3 sized ids
  check_round_trip(TokenDType::kInt32, -20);     // int32 is signed: negatives survive
}

TEST(IndexedDataset, ReadConvertsOtherIntegerDtypes) {
  const std::string prefix = temp_prefix("i8");
  write_dataset(prefix, TokenDType::kInt8, {{{-128, 0, 127}}});
  auto ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  int32_t got[3];
  ASSERT_TRUE(ds->read(0, 0, 3, got).ok());
  EXPECT_EQ(got[0], -128);
  EXPECT_EQ(got[2], 127);

  const std::string wide = temp_prefix("i64");
  write_dataset(wide, TokenDType::kInt64, {{{5, int64_t{1} << 31}}});
  auto ds64 = IndexedDataset::open(wide);
  ASSERT_TRUE(ds64.ok()) << ds64.status();
  ASSERT_TRUE(ds64->read(0, 0, 1, got).ok());
  EXPECT_EQ(got[0], 5);
  expect_error(ds64->read(0, 0, 2, got), wide, "does not fit int32");
}

TEST(IndexedDataset, MegatronByteLayout) {
  // Documents [[1,2,3],[4,5]], one sequence each, uint16 (code 8).
  const std::string prefix = temp_prefix("mega");
  write_dataset(prefix, TokenDType::kUint16, {{{1, 2, 3}}, {{4, 5}}});
  Bytes idx = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
  put<uint64_t>(idx, 1);  // version
  put<uint8_t>(idx, 8);   // uint16
  put<uint64_t>(idx, 2);  // sequence count
  put<uint64_t>(idx, 3);  // document index count = documents + 1
  put<int32_t>(idx, 3);   // sequence lengths
  put<int32_t>(idx, 2);
  put<int64_t>(idx, 0);   // byte pointers
  put<int64_t>(idx, 6);
  put<int64_t>(idx, 0);   // document indices
  put<int64_t>(idx, 1);
  put<int64_t>(idx, 2);
  ASSERT_EQ(idx.size(), 34u + 2 * 4 + 2 * 8 + 3 * 8);
  EXPECT_EQ(read_file_bytes(prefix + ".idx"), idx);
  const Bytes bin = {1, 0, 2, 0, 3, 0, 4, 0, 5, 0};
  EXPECT_EQ(read_file_bytes(prefix + ".bin"), bin);
  // No temporaries are left behind.
  EXPECT_FALSE(std::filesystem::exists(prefix + ".bin.tmp"));
  EXPECT_FALSE(std::filesystem::exists(prefix + ".idx.tmp"));
}

TEST(IndexedDataset, WriterRejectsTokensOutsideDtype) {
  const std::string prefix = temp_prefix("range");
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  ASSERT_TRUE(w.ok());
  const std::vector<int64_t> too_big = {1, 65536};
  expect_error(w->add_sequence(too_big), prefix, "token 65536 at position 1");
  const std::vector<int64_t> negative = {-1};
  expect_error(w->add_sequence(negative), prefix, "does not fit uint16");
  EXPECT_EQ(w->num_sequences(), 0);
  auto w32 = IndexedDatasetWriter::create(temp_prefix("range32"), TokenDType::kInt32);
  ASSERT_TRUE(w32.ok());
  const std::vector<int64_t> past_int32 = {int64_t{1} << 31};
  EXPECT_FALSE(w32->add_sequence(past_int32).ok());
  EXPECT_FALSE(IndexedDatasetWriter::create(prefix, TokenDType::kFloat32).ok());
}

TEST(IndexedDataset, UnfinishedWriterLeavesNoDataset) {
  const std::string prefix = temp_prefix("killed");
  {
    auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
    ASSERT_TRUE(w.ok());
    const std::vector<int64_t> seq = {1, 2, 3};
    ASSERT_TRUE(w->add_sequence(seq).ok());
    w->end_document();
  }  // destroyed before finalize()
  EXPECT_FALSE(std::filesystem::exists(prefix + ".bin"));
  EXPECT_FALSE(std::filesystem::exists(prefix + ".idx"));
  const auto ds = IndexedDataset::open(prefix);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kNotFound);
  expect_error(ds.status(), prefix + ".idx", "No such file");
}

TEST(IndexedDataset, FinalizeClosesTrailingDocument) {
  const std::string prefix = temp_prefix("trail");
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  ASSERT_TRUE(w.ok());
  const std::vector<int64_t> seq = {7, 8};
  ASSERT_TRUE(w->add_sequence(seq).ok());
  ASSERT_TRUE(w->finalize().ok());
  auto ds = IndexedDataset::open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->num_documents(), 1);
  EXPECT_FALSE(w->finalize().ok());  // done
}

// A valid 3-document dataset [[1,2,3],[4,5],[6]] in uint16, then one edit.
class CorruptIndex : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = temp_prefix("c");
    write_dataset(prefix_, TokenDType::kUint16, {{{1, 2, 3}}, {{4, 5}}, {{6}}});
    idx_ = read_file_bytes(prefix_ + ".idx");
    ASSERT_EQ(idx_.size(), 34u + 3 * 12 + 4 * 8);
    ASSERT_TRUE(IndexedDataset::open(prefix_).ok());
  }
  template <class T>
  void poke(size_t offset, T v) {
    std::memcpy(idx_.data() + offset, &v, sizeof(T));
  }
  absl::Status reopen() {
    write_file_bytes(prefix_ + ".idx", idx_);
    return IndexedDataset::open(prefix_).status();
  }
  static constexpr size_t kPointers = 34 + 3 * 4;
  static constexpr size_t kDocs = kPointers + 3 * 8;
  std::string prefix_;
  Bytes idx_;
};

TEST_F(CorruptIndex, TruncatedHeader) {
  idx_.resize(20);
  expect_error(reopen(), prefix_ + ".idx", "truncated index");
}

TEST_F(CorruptIndex, TruncatedArrays) {
  idx_.resize(idx_.size() - 4);
  expect_error(reopen(), prefix_ + ".idx", "truncated index");
}

TEST_F(CorruptIndex, HugeCountDoesNotOverflow) {
  poke<uint64_t>(18, ~uint64_t{0});
  expect_error(reopen(), prefix_ + ".idx", "truncated index");
}

TEST_F(CorruptIndex, TrailingBytes) {
  idx_.resize(idx_.size() + 5);
  expect_error(reopen(), prefix_ + ".idx", "does not match");
}

TEST_F(CorruptIndex, BadMagic) {
  idx_[0] = 'X';
  expect_error(reopen(), prefix_ + ".idx", "bad magic");
}

TEST_F(CorruptIndex, Version2) {
  poke<uint64_t>(9, 2);
  expect_error(reopen(), prefix_ + ".idx", "unsupported version 2");
}

TEST_F(CorruptIndex, DtypeCode9) {
  poke<uint8_t>(17, 9);
  expect_error(reopen(), prefix_ + ".idx", "unknown dtype code 9");
}

TEST_F(CorruptIndex, PointerPastBinEnd) {
  poke<int64_t>(kPointers + 8, 1000);
  expect_error(reopen(), prefix_ + ".bin", "sequence 1 (byte pointer 1000");
}

TEST_F(CorruptIndex, MisalignedPointer) {
  poke<int64_t>(kPointers + 8, 5);
  expect_error(reopen(), prefix_ + ".idx", "bad byte pointer 5");
}

TEST_F(CorruptIndex, NegativeLength) {
  poke<int32_t>(34, -1);
  expect_error(reopen(), prefix_ + ".idx", "negative length");
}

TEST_F(CorruptIndex, TruncatedBin) {
  Bytes bin = read_file_bytes(prefix_ + ".bin");
  ASSERT_EQ(bin.size(), 12u);
  bin.resize(9);
  write_file_bytes(prefix_ + ".bin", bin);
  expect_error(IndexedDataset::open(prefix_).status(), prefix_ + ".bin",
               "sequence 1 (byte pointer 6, 2 tokens of uint16) runs past the end");
}

TEST_F(CorruptIndex, DocumentIndexNotStartingAtZero) {
  poke<int64_t>(kDocs, 1);
  expect_error(reopen(), prefix_ + ".idx", "starts at 1");
}

TEST_F(CorruptIndex, DocumentIndexNotMonotonic) {
  poke<int64_t>(kDocs + 16, 0);  // [0, 1, 0, 3]
  expect_error(reopen(), prefix_ + ".idx", "not monotonic");
}

TEST_F(CorruptIndex, DocumentIndexNotEndingAtCount) {
  poke<int64_t>(kDocs + 24, 2);  // [0, 1, 2, 2]
  expect_error(reopen(), prefix_ + ".idx", "ends at 2, not at the sequence count 3");
}

TEST_F(CorruptIndex, MissingBin) {
  std::filesystem::remove(prefix_ + ".bin");
  const absl::Status s = IndexedDataset::open(prefix_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  expect_error(s, prefix_ + ".bin", "cannot open");
}

}  // namespace
}  // namespace rotor
