// rotor prep: the byte and SentencePiece tokenizers, text and JSONL inputs ->
// Megatron datasets read back and decoded, and one clear error per bad input.
#include "data/prep.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"
#include "data/tokenizer.h"
#include "nlohmann/json.hpp"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

// A fresh directory per test.
std::string temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::path(::testing::TempDir()) /
                       absl::StrCat("rotor_prep_", info->test_suite_name(), "_", info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string write_file(const std::string& path, const std::string& contents) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
  return path;
}

std::unique_ptr<Tokenizer> tokenizer_or_die(const std::string& spec) {
  auto t = make_tokenizer(spec);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

// The tokens of document k (one sequence each in rotor's datasets).
std::vector<int32_t> document_tokens(const IndexedDataset& ds, int64_t doc) {
  const auto [first, last] = ds.document_range(doc);
  EXPECT_EQ(last, first + 1);
  std::vector<int32_t> tokens(static_cast<size_t>(ds.sequence_length(first)));
  const absl::Status s = ds.read(first, 0, ds.sequence_length(first), tokens.data());
  EXPECT_TRUE(s.ok()) << s;
  return tokens;
}

// Checks that document k is `text` followed by eos.
void expect_document(const IndexedDataset& ds, const Tokenizer& tok, int64_t doc,
                     const std::string& text) {
  std::vector<int32_t> tokens = document_tokens(ds, doc);
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(tokens.back(), tok.eos_id()) << "document " << doc;
  tokens.pop_back();
  auto decoded = tok.decode(tokens);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, text) << "document " << doc;
}

absl::Status run_prep(PrepOptions options, std::string* log = nullptr) {
  std::ostringstream progress;
  absl::Status s = prep_dataset(options, progress);
  if (log != nullptr) *log = progress.str();
  return s;
}

TEST(BytesTokenizer, RoundTripsUtf8) {
  auto tok = tokenizer_or_die("bytes");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 260);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  const std::string text = "Grüße, 世界! naïve café \xF0\x9F\x98\x80\n\ttabs\0nul"s;
  auto ids = tok->encode(text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->size(), text.size());
  EXPECT_EQ((*ids)[0], 'G');
  EXPECT_EQ((*ids)[2], 0xC3);  // first byte of "ü"
  for (int32_t id : *ids) EXPECT_LT(id, 256);
  auto back = tok->decode(*ids);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, text);
  // Specials decode to nothing; ids outside the vocabulary are errors.
  const std::vector<int32_t> with_specials = {256, 'h', 'i', 257, 258};
  EXPECT_EQ(*tok->decode(with_specials), "hi");
  const std::vector<int32_t> bad = {'a', 260};
  EXPECT_FALSE(tok->decode(bad).ok());
}

TEST(MakeTokenizer, Errors) {
  auto unknown = make_tokenizer("gpt2");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("gpt2"), std::string::npos) << unknown.status();

  const std::string missing = temp_dir() + "/no_such.model";
  auto absent = make_tokenizer("spm:" + missing);
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.status().message().find(missing), std::string::npos) << absent.status();

  const std::string garbage = write_file(temp_dir() + "/garbage.model", "not a model");
  auto invalid = make_tokenizer("spm:" + garbage);
  ASSERT_FALSE(invalid.ok());
  EXPECT_NE(invalid.status().message().find(garbage), std::string::npos) << invalid.status();
}

TEST(Prep, TwoTextFilesAreTwoDocuments) {
  const std::string dir = temp_dir();
  const std::string a_text = "The first document.\nIt has two lines, and ünïcödé.\n";
  const std::string b_text = "Second: 日本語のテキスト";
  PrepOptions options;
  options.tokenizer = "bytes";
  options.inputs = {write_file(dir + "/a.txt", a_text), write_file(dir + "/b.txt", b_text)};
  options.output = dir + "/out";
  PrepStats stats;
  std::ostringstream progress;
  const absl::Status s = prep_dataset(options, progress, &stats);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(stats.documents, 2);
  EXPECT_EQ(stats.tokens, static_cast<int64_t>(a_text.size() + b_text.size() + 2));
  EXPECT_NE(progress.str().find("2 documents"), std::string::npos) << progress.str();
  EXPECT_NE(progress.str().find("tokens/s"), std::string::npos) << progress.str();
  EXPECT_FALSE(fs::exists(dir + "/out.bin.tmp"));

  auto ds = IndexedDataset::open(dir + "/out");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->dtype(), TokenDType::kUint16);
  EXPECT_EQ(ds->num_documents(), 2);
  EXPECT_EQ(ds->num_sequences(), 2);
  EXPECT_EQ(ds->num_tokens(), stats.tokens);
  auto tok = tokenizer_or_die("bytes");
  expect_document(*ds, *tok, 0, a_text);
  expect_document(*ds, *tok, 1, b_text);
}

TEST(Prep, JsonlLinesAreDocuments) {
  const std::string dir = temp_dir();
  const std::vector<std::string> texts = {"plain ascii", "unicode: Grüße 世界 \xF0\x9F\x98\x80",
                                          "line\nbreak and \"quotes\""};
  // Line 3 is blank (skipped); the third record has another key too.
  const std::string jsonl =
      "{\"text\": \"plain ascii\"}\n"
      "{\"id\": 2, \"text\": \"unicode: Grüße \\u4e16\\u754c \\ud83d\\ude00\"}\n"
      "\n"
      "{\"text\": \"line\\nbreak and \\\"quotes\\\"\", \"meta\": {}}\r\n";
  PrepOptions options;
  options.tokenizer = "bytes";
  options.inputs = {write_file(dir + "/docs.jsonl", jsonl)};
  options.output = dir + "/out";
  ASSERT_TRUE(run_prep(options).ok());
  auto ds = IndexedDataset::open(dir + "/out");
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->num_documents(), 3);
  auto tok = tokenizer_or_die("bytes");
  for (int64_t k = 0; k < 3; ++k) expect_document(*ds, *tok, k, texts[static_cast<size_t>(k)]);
}

TEST(Prep, JsonlKeyOption) {
  const std::string dir = temp_dir();
  PrepOptions options;
  options.tokenizer = "bytes";
  // Not named .jsonl: --jsonl-key makes it JSONL.
  options.inputs = {write_file(dir + "/docs.txt", "{\"body\": \"one\"}\n{\"body\": \"two\"}\n")};
  options.output = dir + "/out";
  options.jsonl_key = "body";
  ASSERT_TRUE(run_prep(options).ok());
  auto ds = IndexedDataset::open(dir + "/out");
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->num_documents(), 2);
  auto tok = tokenizer_or_die("bytes");
  expect_document(*ds, *tok, 0, "one");
  expect_document(*ds, *tok, 1, "two");
}

TEST(Prep, BadJsonLineNamesFileAndLine) {
  const std::string dir = temp_dir();
  const std::string path =
      write_file(dir + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": oops}\n");
  PrepOptions options{.tokenizer = "bytes", .inputs = {path}, .output = dir + "/out"};
  const absl::Status s = run_prep(options);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path + ":3:"), std::string::npos) << s;
  EXPECT_NE(s.message().find("invalid JSON"), std::string::npos) << s;
  // Nothing is left behind.
  EXPECT_FALSE(fs::exists(dir + "/out.bin"));
  EXPECT_FALSE(fs::exists(dir + "/out.idx"));
  EXPECT_FALSE(fs::exists(dir + "/out.bin.tmp"));
}

TEST(Prep, MissingKeyNamesIt) {
  const std::string dir = temp_dir();
  const std::string path =
      write_file(dir + "/nokey.jsonl", "{\"text\": \"ok\"}\n{\"content\": \"no text here\"}\n");
  PrepOptions options{.tokenizer = "bytes", .inputs = {path}, .output = dir + "/out"};
  const absl::Status s = run_prep(options);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path + ":2:"), std::string::npos) << s;
  EXPECT_NE(s.message().find("missing key 'text'"), std::string::npos) << s;

  // A value that is not a string, and a line that is not an object.
  write_file(path, "{\"text\": 5}\n");
  const absl::Status not_string = run_prep(options);
  EXPECT_NE(not_string.message().find(path + ":1: key 'text' is not a string"), std::string::npos)
      << not_string;
  write_file(path, "[\"text\"]\n");
  const absl::Status not_object = run_prep(options);
  EXPECT_NE(not_object.message().find(path + ":1: expected a JSON object"), std::string::npos)
      << not_object;
}

TEST(Prep, MissingInputIsAnError) {
  const std::string dir = temp_dir();
  const std::string missing = dir + "/absent.txt";
  PrepOptions options{.tokenizer = "bytes",
                      .inputs = {write_file(dir + "/present.txt", "x"), missing},
                      .output = dir + "/out"};
  const absl::Status s = run_prep(options);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(missing), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(dir + "/out.bin"));
  EXPECT_FALSE(fs::exists(dir + "/out.idx"));
}

// Non-empty, whitespace-trimmed lines of the GPL-3 text (Debian's base-files).
std::vector<std::string> license_lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    std::string trimmed(absl::StripAsciiWhitespace(line));
    if (!trimmed.empty()) lines.push_back(trimmed);
  }
  return lines;
}

TEST(Prep, SentencePieceModelTrainedHere) {
  const char* kLicense = "/usr/share/common-licenses/GPL-3";
  if (std::system("command -v spm_train >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "spm_train not installed (Debian package sentencepiece)";
  }
  if (!fs::exists(kLicense)) GTEST_SKIP() << kLicense << " not found (Debian base-files)";
  const std::string dir = temp_dir();
  std::vector<std::string> lines = license_lines(kLicense);
  ASSERT_GT(lines.size(), 100u);
  lines.resize(400 < lines.size() ? 400 : lines.size());  // ~25 KB of English
  std::string corpus;
  for (const std::string& l : lines) absl::StrAppend(&corpus, l, "\n");
  write_file(dir + "/corpus.txt", corpus);

  // Identity normalization and kept whitespace, so decode(encode(x)) == x exactly.
  const std::string cmd =
      absl::StrCat("spm_train --input=", dir, "/corpus.txt --model_prefix=", dir,
                   "/spm --vocab_size=200 --model_type=bpe --character_coverage=1.0",
                   " --normalization_rule_name=identity --remove_extra_whitespaces=false > ", dir,
                   "/spm_train.log 2>&1");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << " (see " << dir << "/spm_train.log)";
  const std::string spec = "spm:" + dir + "/spm.model";

  auto tok = tokenizer_or_die(spec);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 200);
  EXPECT_GE(tok->eos_id(), 0);
  EXPECT_GE(tok->bos_id(), 0);
  const std::string& line = lines[10];
  auto ids = tok->encode(line);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_LT(ids->size(), line.size());  // merges happened
  auto back = tok->decode(*ids);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, line);

  // Three lines as JSONL -> three documents.
  std::string jsonl;
  for (int k = 20; k < 23; ++k)
    absl::StrAppend(&jsonl, nlohmann::json{{"text", lines[k]}}.dump(), "\n");
  PrepOptions options{.tokenizer = spec,
                      .inputs = {write_file(dir + "/docs.jsonl", jsonl)},
                      .output = dir + "/out"};
  const absl::Status s = run_prep(options);
  ASSERT_TRUE(s.ok()) << s;
  auto ds = IndexedDataset::open(dir + "/out");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->dtype(), TokenDType::kUint16);
  ASSERT_EQ(ds->num_documents(), 3);
  for (int k = 0; k < 3; ++k) expect_document(*ds, *tok, k, lines[static_cast<size_t>(20 + k)]);
}

}  // namespace
}  // namespace rotor
