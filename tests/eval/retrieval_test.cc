// Passkey and needle grids: prompts have the requested length and depth, the
// scorers pass an answer holding the key (or the needle's words) and fail a
// wrong one, the grid turns an answerer that retrieves into pass_rate 1 and
// one that does not into 0, a real model runs the whole path (greedy
// KV-cache decoding, entropies) and the CSV has the exact header and one row
// per cell.
//
// A model trained to copy the key is tests/trainer/passkey_copier_test.cc; the
// oracle answerer below reads the key from the prompt tokens, so it passes
// only if the prompt holds the key and the scorer accepts it, and its
// wrong-digit twin checks that the scorer can fail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "eval/retrieval.h"
#include "model/llama.h"
#include "tests/common/tiny_config.h"

namespace rotor {
namespace {

std::unique_ptr<Tokenizer> bytes() {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = make_tokenizer("bytes");
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

std::string text_of(const Tokenizer& t, std::span<const int32_t> ids) {
  absl::StatusOr<std::string> s = t.decode(ids);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : "";
}

std::vector<int32_t> ids_of(const Tokenizer& t, const std::string& s) { return *t.encode(s); }

// Answers with what follows the last "pass key is " in the prompt, optionally
// with its last digit changed.
Answerer passkey_oracle(const Tokenizer& t, bool wrong) {
  return [&t, wrong](std::span<const int32_t> prompt, int64_t max_new) {
    const std::string text = text_of(t, prompt);
    const size_t at = text.find("The pass key is ");
    std::string key = at == std::string::npos ? "" : text.substr(at + 16, 5);
    if (wrong && !key.empty()) key.back() = key.back() == '9' ? '0' : static_cast<char>(key.back() + 1);
    Answer a;
    a.ids = ids_of(t, " " + key + ".");
    if (static_cast<int64_t>(a.ids.size()) > max_new) a.ids.resize(static_cast<size_t>(max_new));
    a.mean_entropy = 0.5;
    return a;
  };
}

TEST(Retrieval, PasskeyPromptHasTheLengthAndDepth) {
  auto t = bytes();
  const std::string instruction = kPasskeyInstruction, question = kPasskeyQuestion;
  for (double depth : {0.0, 0.5, 1.0}) {
    absl::StatusOr<RetrievalPrompt> p = passkey_prompt(*t, 700, depth, 48213);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_EQ(p->ids.size(), 700u);
    EXPECT_EQ(p->expected, "48213");
    const std::string text = text_of(*t, p->ids);
    EXPECT_EQ(text.find(instruction), 0u);
    EXPECT_EQ(text.rfind(question), text.size() - question.size());
    const std::string sentence = "The pass key is 48213. Remember it. 48213 is the pass key. ";
    ASSERT_EQ(text.find(sentence), static_cast<size_t>(p->insert_at)) << text;
    const double haystack = 700.0 - instruction.size() - sentence.size() - question.size();
    const double where = (p->insert_at - static_cast<double>(instruction.size())) / haystack;
    // Snapped to a filler repetition (91 bytes of a 421-byte haystack here).
    EXPECT_NEAR(where, depth, 0.5 * 91 / haystack + 1e-9) << depth;
  }
  absl::StatusOr<RetrievalPrompt> short_prompt = passkey_prompt(*t, 100, 0.5, 12345);
  ASSERT_FALSE(short_prompt.ok());
  EXPECT_NE(short_prompt.status().message().find("length 100 is too short"), std::string::npos)
      << short_prompt.status();
}

TEST(Retrieval, NeedlePromptCutsTheHaystack) {
  auto t = bytes();
  std::string hay;
  for (int i = 0; hay.size() < 2000; ++i) hay += "Sentence number " + std::to_string(i) + " of real text. ";
  const std::vector<int32_t> h = ids_of(*t, hay);
  absl::StatusOr<RetrievalPrompt> p = needle_prompt(*t, h, 10, 600, 0.25);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->ids.size(), 600u);
  const std::string text = text_of(*t, p->ids);
  EXPECT_EQ(text.find(kNeedle), static_cast<size_t>(p->insert_at));
  const int64_t fixed = static_cast<int64_t>(std::string(kNeedleInstruction).size() +
                                             std::string(kNeedle).size() + std::string(kNeedleQuestion).size());
  const int64_t f = 600 - fixed;
  EXPECT_EQ(p->insert_at - static_cast<int64_t>(std::string(kNeedleInstruction).size()),
            std::llround(0.25 * static_cast<double>(f)));
  // The haystack text right after the instruction is the held-out text from offset 10.
  EXPECT_EQ(text.substr(std::string(kNeedleInstruction).size(), 20), hay.substr(10, 20));
  EXPECT_FALSE(needle_prompt(*t, std::span<const int32_t>(h.data(), 100), 0, 600, 0.5).ok());
}

TEST(Retrieval, Scorers) {
  EXPECT_EQ(score_passkey("12345", " 12345."), 1.0);
  EXPECT_EQ(score_passkey("12345", "12345 is it"), 1.0);
  EXPECT_EQ(score_passkey("12345", " 12346."), 0.0);
  EXPECT_EQ(score_passkey("12345", " 1234"), 0.0);
  EXPECT_EQ(score_passkey("12345", " the key 12345"), 0.0);  // must start the answer
  EXPECT_EQ(score_needle(kNeedleAnswerWords, " eat a sandwich and sit in Dolores Park on a sunny day."), 1.0);
  EXPECT_NEAR(score_needle(kNeedleAnswerWords, " to EAT a Sandwich!"), 2.0 / 7.0, 1e-12);
  EXPECT_EQ(score_needle(kNeedleAnswerWords, " go to the beach"), 0.0);
}

TEST(Retrieval, GridPassesARetrieverAndFailsAWrongOne) {
  auto t = bytes();
  RetrievalOptions o{.lengths = {300, 500}, .depths = {0, 0.5, 1}, .trials = 3, .seed = 9};
  absl::StatusOr<std::vector<RetrievalCell>> right =
      run_retrieval_grid(RetrievalKind::kPasskey, *t, passkey_oracle(*t, false), o);
  ASSERT_TRUE(right.ok()) << right.status();
  ASSERT_EQ(right->size(), 6u);
  for (const RetrievalCell& c : *right) {
    EXPECT_EQ(c.trials, 3);
    EXPECT_EQ(c.passed, 3) << c.length << " " << c.depth;
    EXPECT_EQ(c.pass_rate, 1.0);
    EXPECT_DOUBLE_EQ(c.mean_entropy, 0.5);
  }
  EXPECT_EQ((*right)[4].length, 500);
  EXPECT_EQ((*right)[4].depth, 0.5);
  absl::StatusOr<std::vector<RetrievalCell>> wrong =
      run_retrieval_grid(RetrievalKind::kPasskey, *t, passkey_oracle(*t, true), o);
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  for (const RetrievalCell& c : *wrong) EXPECT_EQ(c.passed, 0);

  // Needle: an answerer that copies the needle's answer passes, a wrong one does not.
  std::string hay;
  for (int i = 0; hay.size() < 3000; ++i) hay += "Line " + std::to_string(i) + " of a long report. ";
  const std::vector<int32_t> h = ids_of(*t, hay);
  auto fixed = [&t](const std::string& s) {
    return Answerer([&t, s](std::span<const int32_t>, int64_t) { return Answer{ids_of(*t, s), 1.0}; });
  };
  absl::StatusOr<std::vector<RetrievalCell>> needle = run_retrieval_grid(
      RetrievalKind::kNeedle, *t, fixed(" eat a sandwich and sit in Dolores Park"), o, h);
  ASSERT_TRUE(needle.ok()) << needle.status();
  for (const RetrievalCell& c : *needle) EXPECT_EQ(c.passed, 3);
  needle = run_retrieval_grid(RetrievalKind::kNeedle, *t, fixed(" go surfing at Ocean Beach"), o, h);
  ASSERT_TRUE(needle.ok()) << needle.status();
  for (const RetrievalCell& c : *needle) EXPECT_EQ(c.passed, 0);

  o.depths = {1.5};
  EXPECT_FALSE(run_retrieval_grid(RetrievalKind::kPasskey, *t, passkey_oracle(*t, false), o).ok());
}

TEST(Retrieval, RealModelRunsTheWholePathAndWritesTheCsv) {
  auto t = bytes();
  const LlamaConfig c = testing::tiny_config(kBytesVocabSize);
  LlamaOptions opts;
  opts.rope.method = RopeMethod::kDynamic;
  opts.rope.factor = 2;
  opts.rope.original_max_position = 256;
  absl::StatusOr<LlamaModel> model = LlamaModel::create(c, opts);
  ASSERT_TRUE(model.ok()) << model.status();
  model->init_weights(5);
  absl::StatusOr<Answerer> answer = greedy_answerer(*model, t->eos_id());
  ASSERT_TRUE(answer.ok()) << answer.status();
  RetrievalOptions o{.lengths = {260, 300}, .depths = {0, 1}, .trials = 2};
  absl::StatusOr<std::vector<RetrievalCell>> cells =
      run_retrieval_grid(RetrievalKind::kPasskey, *t, *answer, o);
  ASSERT_TRUE(cells.ok()) << cells.status();
  ASSERT_EQ(cells->size(), 4u);
  for (const RetrievalCell& cell : *cells) {
    EXPECT_EQ(cell.trials, 2);
    EXPECT_TRUE(cell.passed >= 0 && cell.passed <= 2);
    // A row over n keys has entropy in (0, ln n]; answering rows see at most
    // 300 prompt + 11 answer tokens (a random model's rows are near uniform).
    EXPECT_TRUE(std::isfinite(cell.mean_entropy) && cell.mean_entropy > 0 &&
                cell.mean_entropy <= std::log(311.0) + 1e-9)
        << cell.mean_entropy;
  }

  const std::string dir = ::testing::TempDir() + "/retrieval_test_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  const std::string path = dir + "/eval/passkey.csv";
  ASSERT_TRUE(write_retrieval_csv(path, "tiny", 42, *cells).ok());
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "run,step,length,depth,trials,passed,pass_rate,mean_entropy");
  EXPECT_EQ(lines[1].rfind("tiny,42,260,0,2,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[4].rfind("tiny,42,300,1,2,", 0), 0u) << lines[4];
  std::filesystem::remove_all(dir);
}

// The answerer of parallel layouts (one forward pass per answer token) gives
// the KV-cache decoder's answers on one rank: same ids, same mean entropy
// (f64: both compute the same rows, in a different order of sums; 1e-9).
// Dynamic NTK past the original length exercises the tables that change as
// the answer grows.
TEST(Retrieval, RecomputeAnswererEqualsKvCacheDecoding) {
  auto t = bytes();
  const LlamaConfig c = testing::tiny_config(kBytesVocabSize);
  LlamaOptions opts;
  opts.dtype = DType::kF64;
  opts.rope.method = RopeMethod::kDynamic;
  opts.rope.factor = 2;
  opts.rope.original_max_position = 262;
  opts.logit_scale.kind = LogitScaleKind::kLogPosition;
  opts.logit_scale.base_length = 64;
  absl::StatusOr<LlamaModel> model = LlamaModel::create(c, opts);
  ASSERT_TRUE(model.ok()) << model.status();
  model->init_weights(11);
  absl::StatusOr<Answerer> cached = greedy_answerer(*model, -1);
  absl::StatusOr<Answerer> recomputed = recompute_answerer(*model, -1);
  ASSERT_TRUE(cached.ok() && recomputed.ok());
  absl::StatusOr<RetrievalPrompt> p = passkey_prompt(*t, 260, 0.5, 31415);
  ASSERT_TRUE(p.ok()) << p.status();
  const Answer a = (*cached)(p->ids, 8), b = (*recomputed)(p->ids, 8);
  ASSERT_EQ(a.ids.size(), 8u);
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_TRUE(std::isfinite(a.mean_entropy) && a.mean_entropy > 0);
  EXPECT_NEAR(a.mean_entropy, b.mean_entropy, 1e-9 * a.mean_entropy);
  // A stop id ends both at the same place (the stop id included).
  const int32_t stop = a.ids[2];
  const Answer sa = (*greedy_answerer(*model, stop))(p->ids, 8), sb = (*recompute_answerer(*model, stop))(p->ids, 8);
  EXPECT_EQ(sa.ids, sb.ids);
  EXPECT_EQ(sa.ids.back(), stop);
  EXPECT_LE(sa.ids.size(), 3u);
}

}  // namespace
}  // namespace rotor
