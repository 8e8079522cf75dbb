// Datasets as documents (data/documents.h): llm.c shards written byte for
// byte as llm.c's write_datafile writes them, opened one by one or by glob,
// split into documents at the format's BOS token (across shard ends), packed
// by PackedSampler and blended with a Megatron indexed dataset; format
// detection; errors name the path.
#include "data/documents.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/blend.h"
#include "data/indexed_dataset.h"
#include "data/llmc_shard.h"
#include "data/packing.h"
#include "tests/common/llmc_datafile.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using testing::LlmcModel;
using testing::write_llmc_datafile;

// A fresh directory for this test.
std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path d = fs::path(::testing::TempDir()) / (std::string("documents_test_") + info->name());
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::vector<int32_t> document(const DocumentSource& s, int64_t doc) {
  std::vector<int32_t> out(static_cast<size_t>(s.document_tokens(doc)));
  const absl::Status st = s.read_document(doc, 0, s.document_tokens(doc), out.data());
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

std::unique_ptr<DocumentSource> open_or_fail(const std::string& path, DocumentFormat format) {
  absl::StatusOr<std::unique_ptr<DocumentSource>> d = open_documents(path, format);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

constexpr uint32_t kEot = 50256;    // GPT-2 <|endoftext|>
constexpr uint32_t kBot = 128000;   // llama-3 <|begin_of_text|>

// Two GPT-2 shards of a glob, in sorted order (written out of order); a
// document runs across the shard end; a file the glob does not match is left out.
TEST(LlmcDocuments, GlobOfGpt2ShardsSplitsAtEndOfText) {
  const std::string dir = test_dir();
  write_llmc_datafile(dir + "/train_000001.bin", {6, 7, kEot, 8, 9, 10});
  write_llmc_datafile(dir + "/train_000000.bin", {kEot, 1, 2, 3, kEot, 4, 5});
  write_llmc_datafile(dir + "/val_000000.bin", {kEot, 99, 99});
  std::unique_ptr<DocumentSource> d = open_or_fail(dir + "/train_*.bin", DocumentFormat::kDetect);
  ASSERT_NE(d, nullptr);
  ASSERT_NE(dynamic_cast<const LlmcDocuments*>(d.get()), nullptr) << "a glob is llm.c";
  EXPECT_EQ(d->name(), dir + "/train_*.bin");
  const auto& shards = dynamic_cast<const LlmcDocuments&>(*d).shards();
  ASSERT_EQ(shards.size(), 2u);
  EXPECT_EQ(shards[0].path(), dir + "/train_000000.bin");
  ASSERT_EQ(d->num_documents(), 3);
  EXPECT_EQ(document(*d, 0), (std::vector<int32_t>{50256, 1, 2, 3}));
  EXPECT_EQ(document(*d, 1), (std::vector<int32_t>{50256, 4, 5, 6, 7}));
  EXPECT_EQ(document(*d, 2), (std::vector<int32_t>{50256, 8, 9, 10}));
  // A part of a document across the shard end.
  std::vector<int32_t> part(3);
  ASSERT_TRUE(d->read_document(1, 2, 3, part.data()).ok());
  EXPECT_EQ(part, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(d->read_document(1, 3, 3, part.data()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(d->read_document(3, 0, 1, part.data()).code(), absl::StatusCode::kOutOfRange);
}

// A single llama-3 file, detected by its magic; ids beyond uint16; tokens
// before the first BOS are a document of their own.
TEST(LlmcDocuments, Llama3FileDetectedByMagic) {
  const std::string dir = test_dir();
  write_llmc_datafile(dir + "/shard.bin", {70000, 5, kBot, 128001, 100000, kBot, 3},
                      LlmcModel::kLlama3);
  std::unique_ptr<DocumentSource> d = open_or_fail(dir + "/shard.bin", DocumentFormat::kDetect);
  ASSERT_NE(d, nullptr);
  const auto* llmc = dynamic_cast<const LlmcDocuments*>(d.get());
  ASSERT_NE(llmc, nullptr);
  EXPECT_EQ(llmc->width(), LlmcTokenWidth::kUint32);
  EXPECT_EQ(llmc->bos(), kBot);
  ASSERT_EQ(d->num_documents(), 3);
  EXPECT_EQ(document(*d, 0), (std::vector<int32_t>{70000, 5}));
  EXPECT_EQ(document(*d, 1), (std::vector<int32_t>{128000, 128001, 100000}));
  EXPECT_EQ(document(*d, 2), (std::vector<int32_t>{128000, 3}));
  // In a GPT-2 shard 128000 cannot occur and 50256 is the separator.
  write_llmc_datafile(dir + "/gpt2.bin", {1, kEot, 2});
  std::unique_ptr<DocumentSource> g = open_or_fail(dir + "/gpt2.bin", DocumentFormat::kLlmc);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->num_documents(), 2);
}

TEST(LlmcDocuments, DetectionAndErrors) {
  const std::string dir = test_dir();
  // A Megatron prefix is detected as one (the path itself is not a file).
  auto w = IndexedDatasetWriter::create(dir + "/mega", TokenDType::kUint16);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->add_sequence(std::vector<int64_t>{1, 2, 3}).ok());
  w->end_document();
  ASSERT_TRUE(w->finalize().ok());
  std::unique_ptr<DocumentSource> m = open_or_fail(dir + "/mega", DocumentFormat::kDetect);
  ASSERT_NE(m, nullptr);
  EXPECT_NE(dynamic_cast<const IndexedDataset*>(m.get()), nullptr);
  EXPECT_EQ(document(*m, 0), (std::vector<int32_t>{1, 2, 3}));
  // Asked for llm.c, a Megatron .bin is refused (too short for a header here).
  absl::StatusOr<std::unique_ptr<DocumentSource>> bad = open_documents(dir + "/mega.bin", DocumentFormat::kLlmc);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir + "/mega.bin: truncated llm.c shard"), std::string::npos) << bad.status();
  // Asked for Megatron, an llm.c shard has no .idx.
  write_llmc_datafile(dir + "/a_0.bin", {kEot, 1});
  bad = open_documents(dir + "/a_0.bin", DocumentFormat::kMegatron);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir + "/a_0.bin.idx"), std::string::npos) << bad.status();
  // A glob that matches nothing.
  bad = open_documents(dir + "/nothing_*.bin", DocumentFormat::kDetect);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(bad.status().message(), dir + "/nothing_*.bin: no file matches");
  // Shards of both widths in one glob.
  write_llmc_datafile(dir + "/a_1.bin", {kBot, 1}, LlmcModel::kLlama3);
  bad = open_documents(dir + "/a_*.bin", DocumentFormat::kDetect);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mixes llm.c formats"), std::string::npos) << bad.status();
  // A damaged shard is named.
  write_llmc_datafile(dir + "/b_0.bin", {kEot, 1});
  write_llmc_datafile(dir + "/b_1.bin", {kEot, 2});
  fs::resize_file(dir + "/b_1.bin", 1024 + 3);
  bad = open_documents(dir + "/b_*.bin", DocumentFormat::kDetect);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir + "/b_1.bin: truncated llm.c shard"), std::string::npos)
      << bad.status();
}

// Packing reads llm.c documents like any others: in dataset order (no
// shuffle) sample j is stream tokens [jL, jL + L], and document masking
// starts a segment at every BOS.
TEST(LlmcDocuments, PackedInDatasetOrderWithDocumentMasking) {
  const std::string dir = test_dir();
  write_llmc_datafile(dir + "/s_0.bin", {kEot, 1, 2, 3, kEot, 4});
  write_llmc_datafile(dir + "/s_1.bin", {5, 6, kEot, 7, 8, 9, 10});
  std::unique_ptr<DocumentSource> d = open_or_fail(dir + "/s_?.bin", DocumentFormat::kDetect);
  ASSERT_NE(d, nullptr);
  auto s = PackedSampler::create(d.get(), {.sequence_length = 4, .seed = 0, .document_masking = true,
                                           .shuffle = false});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->samples_per_epoch(), 3);  // (13 - 1) / 4
  absl::StatusOr<PackedSample> x = s->sample(1);  // stream tokens [4, 9)
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(x->ids, (std::vector<int32_t>{50256, 4, 5, 6}));
  EXPECT_EQ(x->targets, (std::vector<int32_t>{4, 5, 6, -1}));  // 50256 starts the next document
  EXPECT_EQ(x->positions, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(x->segments, (std::vector<int32_t>{0, 0, 0, 0}));
  x = s->sample(0);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(x->ids, (std::vector<int32_t>{50256, 1, 2, 3}));
  EXPECT_EQ(x->targets, (std::vector<int32_t>{1, 2, 3, -1}));
  // Shuffled, every sample is still a window of one epoch's document stream.
  auto shuffled = PackedSampler::create(d.get(), {.sequence_length = 4, .seed = 9});
  ASSERT_TRUE(shuffled.ok()) << shuffled.status();
  std::multiset<int32_t> seen;
  for (int64_t i = 0; i < 3; ++i) {
    absl::StatusOr<PackedSample> y = shuffled->sample(i);
    ASSERT_TRUE(y.ok()) << y.status();
    seen.insert(y->ids.begin(), y->ids.end());
  }
  // The 12 inputs are 12 of the 13 stream tokens: none more often than there.
  const std::multiset<int32_t> stream = {50256, 1, 2, 3, 50256, 4, 5, 6, 50256, 7, 8, 9, 10};
  EXPECT_EQ(seen.size(), 12u);
  for (int32_t v : std::set<int32_t>(seen.begin(), seen.end()))
    EXPECT_LE(seen.count(v), stream.count(v)) << v;
}

// A blend of an llm.c glob and a Megatron dataset, weighted like any two datasets.
TEST(LlmcDocuments, BlendedWithAnIndexedDataset) {
  const std::string dir = test_dir();
  std::vector<uint32_t> toks;
  for (int doc = 0; doc < 20; ++doc) {
    toks.push_back(kEot);
    for (int k = 0; k < 9; ++k) toks.push_back(1);
  }
  write_llmc_datafile(dir + "/l_0.bin", std::vector<uint32_t>(toks.begin(), toks.begin() + 100));
  write_llmc_datafile(dir + "/l_1.bin", std::vector<uint32_t>(toks.begin() + 100, toks.end()));
  auto w = IndexedDatasetWriter::create(dir + "/mega", TokenDType::kUint16);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int doc = 0; doc < 20; ++doc) {
    ASSERT_TRUE(w->add_sequence(std::vector<int64_t>(10, 2)).ok());
    w->end_document();
  }
  ASSERT_TRUE(w->finalize().ok());
  std::unique_ptr<DocumentSource> llmc = open_or_fail(dir + "/l_*.bin", DocumentFormat::kLlmc);
  std::unique_ptr<DocumentSource> mega = open_or_fail(dir + "/mega", DocumentFormat::kMegatron);
  ASSERT_NE(llmc, nullptr);
  ASSERT_NE(mega, nullptr);
  EXPECT_EQ(llmc->num_documents(), 20);
  std::vector<PackedSampler> samplers;
  for (const DocumentSource* d : {llmc.get(), mega.get()})
    samplers.push_back(*PackedSampler::create(d, {.sequence_length = 8, .seed = 3}));
  auto blend = BlendedSampler::create(std::move(samplers), {3, 1});
  ASSERT_TRUE(blend.ok()) << blend.status();
  std::map<int, int> from;
  for (int64_t i = 0; i < 40; ++i) {
    absl::StatusOr<PackedSample> s = blend->sample(i);
    ASSERT_TRUE(s.ok()) << s.status();
    const bool is_llmc = s->ids[0] != 2;  // the Megatron tokens are all 2
    for (int32_t t : s->ids) EXPECT_EQ(t == 2, !is_llmc) << "a sample comes from one dataset";
    ++from[is_llmc ? 0 : 1];
  }
  EXPECT_EQ(from[0], 30);
  EXPECT_EQ(from[1], 10);
}

}  // namespace
}  // namespace rotor
