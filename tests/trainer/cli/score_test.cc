// `rotor score`: per-token log-probabilities of a real checkpoint (a tiny model
// saved with save_checkpoint) agree with the training loss path (fused,
// vocab-chunked cross-entropy), --logits holds the logits they come from,
// --text tokenizes with the recipe's tokenizer, a run directory means its
// latest checkpoint, and bad inputs are errors that name what is wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/loading.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.h"
#include "trainer/cli/score_command.h"
#include "tests/trainer/tiny_checkpoint.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSeed = 17;
constexpr int64_t kVocab = 260;  // the byte tokenizer's vocabulary

// A run directory with one checkpoint (step 3) of a tiny model. The recipe
// names a model.init_from and dataset paths that do not exist: scoring must
// use neither.
struct Saved {
  std::string dir;         // scratch directory
  std::string run_dir;     // <dir>/run
  std::string checkpoint;  // <run_dir>/checkpoints/step_00000003
};

const Saved& saved() {
  static const Saved s = [] {
    Saved s;
    // Per process: ctest runs each test of this file as its own process, in parallel.
    s.dir = ::testing::TempDir() + "/score_test_" + std::to_string(getpid());
    fs::remove_all(s.dir);
    fs::create_directories(s.dir);
    s.run_dir = s.dir + "/run";
    const std::string recipe_path = s.dir + "/tiny.yaml";
    std::ofstream(recipe_path)
        << "model: {vocab_size: 260, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,\n"
           "        num_attention_heads: 2, num_key_value_heads: 1,\n"
           "        init_from: " << s.dir << "/no-such-run}\n"
           "rope: {method: none, theta: 10000}\n"
           "logit_scale: {kind: log_position, base_length: 8, skip_layers: [0]}\n"
           "data: {datasets: [{path: " << s.dir << "/no-such-corpus}], sequence_length: 64,\n"
           "       tokenizer: bytes}\n"
           "train: {steps: 3, global_batch_size: 1, micro_batch_size: 1, lr: 1.0e-3, seed: 5}\n"
           "run: {dir: " << s.run_dir << "}\n";
    s.checkpoint = testing::save_tiny_checkpoint(recipe_path, s.run_dir, 3, kSeed);
    EXPECT_TRUE(fs::exists(s.checkpoint + "/state.json"));
    return s;
  }();
  return s;
}

// The model of the saved checkpoint, rebuilt from the seed (not loaded).
LlamaModel reference_model() {
  absl::StatusOr<LoadedRecipe> r = load_recipe(saved().checkpoint + "/recipe.yaml", {});
  EXPECT_TRUE(r.ok()) << r.status();
  absl::StatusOr<LlamaModel> m = LlamaModel::create(r->model, r->model_options());
  EXPECT_TRUE(m.ok()) << m.status();
  m->init_weights(kSeed);
  return std::move(*m);
}

std::vector<int32_t> some_ids(int64_t n) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(mix64(1000 + i) % kVocab));
  return ids;
}

std::string write_file(const std::string& name, const std::string& content) {
  const std::string path = saved().dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string write_tokens(const std::string& name, const std::vector<int32_t>& ids) {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) text += std::to_string(ids[i]) + (i % 7 == 6 ? "\n" : " ");
  return write_file(name, text);
}

struct Scored {
  int rc;
  std::string out, err;
};

Scored score(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int rc = run_score_command(args, out, err);
  return {rc, out.str(), err.str()};
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Score, TokensMatchTheTrainingLoss) {
  const std::vector<int32_t> ids = some_ids(40);
  const Scored r = score({saved().checkpoint, "--tokens", write_tokens("ids.txt", ids)});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::vector<nlohmann::json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), ids.size());
  EXPECT_TRUE(lines[0]["logprob"].is_null()) << lines[0].dump();
  double sum = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["index"], i);
    EXPECT_EQ(lines[i]["token"], ids[i]);
    EXPECT_FALSE(lines[i].contains("text")) << "text only with --text";
    if (i == 0) continue;
    ASSERT_TRUE(lines[i]["logprob"].is_number()) << lines[i].dump();
    const double lp = lines[i]["logprob"].get<double>();
    EXPECT_LE(lp, 0.0);
    sum += lp;
  }

  // The independent path: forward() with targets = the next token (the fused,
  // vocab-chunked cross-entropy of training) on a model rebuilt from the seed.
  LlamaModel model = reference_model();
  const int64_t n = static_cast<int64_t>(ids.size());
  Batch b;
  b.input_ids = Tensor::empty({1, n}, DType::kI32);
  b.targets = Tensor::empty({1, n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    b.input_ids.data<int32_t>()[i] = ids[i];
    b.targets.data<int32_t>()[i] = i + 1 < n ? ids[i + 1] : -1;
  }
  const LossSum loss = model.forward(b);
  ASSERT_EQ(loss.count, n - 1);
  ASSERT_TRUE(std::isfinite(loss.sum) && loss.sum > 0) << loss.sum;
  // Both start from the same f32 hidden states, but the logits are f32
  // matmuls summed in different orders (a tiled head vs the full matmul) and
  // the loss path reduces in its own precision; 1e-4 relative covers the f32
  // rounding of 39 terms of magnitude ~ln(260).
  EXPECT_NEAR(sum, -loss.sum, 1e-4 * loss.sum);

  // The summary on stderr.
  EXPECT_TRUE(contains(r.err, "scored 39 tokens")) << r.err;
  EXPECT_TRUE(contains(r.err, "mean nll")) << r.err;
  EXPECT_TRUE(contains(r.err, "perplexity")) << r.err;
  EXPECT_TRUE(contains(r.err, saved().checkpoint)) << r.err;

  // The library entry point gives the same numbers.
  absl::StatusOr<ScoreResult> direct = score_tokens(saved().checkpoint, ids);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(direct->step, 3);
  EXPECT_EQ(direct->scored, n - 1);
  EXPECT_TRUE(std::isnan(direct->logprobs[0]));
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_EQ(direct->logprobs[i], lines[i]["logprob"].get<double>());
  EXPECT_NEAR(direct->nll_sum, -sum, 1e-9);
  EXPECT_NEAR(direct->perplexity(), std::exp(-sum / static_cast<double>(n - 1)), 1e-9);
  EXPECT_TRUE(direct->logits.empty());
}

TEST(Score, LogitsFileHoldsTheRowsTheLogprobsComeFrom) {
  const std::vector<int32_t> ids = some_ids(24);
  const std::string logits = saved().dir + "/logits.f32";
  const Scored r = score({saved().checkpoint, "--tokens", write_tokens("ids24.txt", ids), "--logits", logits});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::vector<nlohmann::json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), ids.size());
  const int64_t n = static_cast<int64_t>(ids.size());
  ASSERT_EQ(static_cast<int64_t>(fs::file_size(logits)), n * kVocab * 4);
  std::vector<float> data(static_cast<size_t>(n * kVocab));
  std::ifstream(logits, std::ios::binary)
      .read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * 4));
  for (int64_t row : {int64_t{0}, int64_t{5}, n - 2}) {  // row i predicts token i + 1
    const float* l = data.data() + row * kVocab;
    double mx = -INFINITY, s = 0;
    for (int64_t k = 0; k < kVocab; ++k) mx = std::max(mx, static_cast<double>(l[k]));
    for (int64_t k = 0; k < kVocab; ++k) s += std::exp(static_cast<double>(l[k]) - mx);
    const double want = static_cast<double>(l[ids[row + 1]]) - mx - std::log(s);
    EXPECT_NEAR(lines[row + 1]["logprob"].get<double>(), want, 1e-5) << "row " << row;
  }
  // The last row is there too (the prediction after the text) and finite.
  for (int64_t k = 0; k < kVocab; ++k) ASSERT_TRUE(std::isfinite(data[(n - 1) * kVocab + k]));
}

TEST(Score, TextUsesTheRecipeTokenizer) {
  const std::string text = "Hello, w\xc3\xb6rld\n";  // 'ö' is two bytes
  const Scored r = score({saved().checkpoint, "--text", write_file("hello.txt", text)});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::vector<nlohmann::json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), text.size()) << "bytes tokenizer, no bos/eos added";
  for (size_t i = 0; i < text.size(); ++i) {
    EXPECT_EQ(lines[i]["token"], static_cast<unsigned char>(text[i])) << i;
    const std::string piece = lines[i]["text"].get<std::string>();
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      EXPECT_EQ(piece, text.substr(i, 1)) << i;
    } else {
      EXPECT_EQ(piece, "\xef\xbf\xbd") << "half of a UTF-8 character: U+FFFD";
    }
  }
  EXPECT_TRUE(lines[0]["logprob"].is_null());

  // The same ids through --tokens give the same numbers.
  std::vector<int32_t> ids(text.begin(), text.end());
  for (int32_t& id : ids) id &= 0xff;
  const Scored t = score({saved().checkpoint, "--tokens", write_tokens("hello_ids.txt", ids)});
  ASSERT_EQ(t.rc, 0) << t.err;
  const std::vector<nlohmann::json> tl = json_lines(t.out);
  ASSERT_EQ(tl.size(), lines.size());
  for (size_t i = 0; i < tl.size(); ++i) EXPECT_EQ(tl[i]["logprob"], lines[i]["logprob"]);
}

TEST(Score, TextPrefersTheCheckpointsTokenizerModel) {
  // <ckpt>/tokenizer.model wins over the recipe's data.tokenizer (bytes): an
  // invalid one is an error naming it (a real SentencePiece model needs
  // spm_train; tests/data/prep_test.cc covers the spm tokenizer itself).
  const std::string copy = saved().dir + "/with_spm";
  fs::remove_all(copy);
  fs::copy(saved().checkpoint, copy, fs::copy_options::recursive);
  std::ofstream(copy + "/tokenizer.model") << "not a model";
  const Scored r = score({copy, "--text", write_file("spm.txt", "abc")});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "rotor score: tokenizer: ")) << r.err;
  EXPECT_TRUE(contains(r.err, copy + "/tokenizer.model")) << r.err;
  // --tokens does not need the tokenizer.
  EXPECT_EQ(score({copy, "--tokens", write_tokens("spm_ids.txt", some_ids(5))}).rc, 0);
}

TEST(Score, RunDirectoryMeansItsLatestCheckpoint) {
  const std::string ids = write_tokens("ids_run.txt", some_ids(12));
  const Scored a = score({saved().checkpoint, "--tokens", ids});
  const Scored b = score({saved().run_dir, "--tokens", ids});
  ASSERT_EQ(a.rc, 0) << a.err;
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_TRUE(contains(b.err, saved().checkpoint)) << b.err;
}

TEST(Score, InputErrorsNameTheFileAndToken) {
  const std::string ckpt = saved().checkpoint;
  const std::string bad = write_file("bad.txt", "1 2 12x 3\n");
  Scored r = score({ckpt, "--tokens", bad});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "rotor score: " + bad + ": token 3: '12x' is not an integer")) << r.err;
  EXPECT_TRUE(r.out.empty());

  const std::string big = write_file("big.txt", "5 260 7\n");
  r = score({ckpt, "--tokens", big});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, big + ": token 2: id 260 outside the vocabulary [0, 260)")) << r.err;
  r = score({ckpt, "--tokens", write_file("neg.txt", "5 -1\n")});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "token 2: id -1")) << r.err;

  r = score({ckpt, "--tokens", write_file("one.txt", " 42 \n")});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "need at least 2 tokens")) << r.err;
  r = score({ckpt, "--text", write_file("empty.txt", "")});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "need at least 2 tokens")) << r.err;

  r = score({ckpt, "--tokens", saved().dir + "/no-such-ids.txt"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "no-such-ids.txt: no such file")) << r.err;
}

TEST(Score, CheckpointErrors) {
  const std::string ids = write_tokens("ids_err.txt", some_ids(8));
  Scored r = score({saved().dir + "/nowhere", "--tokens", ids});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "rotor score: " + saved().dir + "/nowhere: no such directory")) << r.err;

  r = score({saved().dir, "--tokens", ids});  // a directory, but no checkpoint
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "neither a checkpoint directory")) << r.err;

  // A copy of the checkpoint with one byte of the weights flipped.
  const std::string copy = saved().dir + "/corrupt";
  fs::remove_all(copy);
  fs::copy(saved().checkpoint, copy, fs::copy_options::recursive);
  {
    std::fstream f(copy + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-5, std::ios::end);
    const char c = static_cast<char>(f.get());
    f.seekp(-5, std::ios::end);
    f.put(static_cast<char>(c ^ 0x40));
  }
  r = score({copy, "--tokens", ids});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, copy + "/model.safetensors: checksum mismatch")) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(Score, UsageErrors) {
  const std::string ckpt = saved().checkpoint;
  const std::string ids = write_tokens("ids_usage.txt", some_ids(8));
  const std::string text = write_file("usage.txt", "abc");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {ckpt}, {ckpt, "--tokens", ids, "--text", text},
        {ckpt, "--tokens", ids, "--frobnicate"}, {ckpt, "--tokens"}, {ckpt, ckpt, "--tokens", ids},
        {"--tokens", ids}}) {
    const Scored r = score(args);
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_TRUE(contains(r.err, "rotor score: ")) << r.err;
    EXPECT_TRUE(contains(r.err, "usage: rotor score")) << r.err;
    EXPECT_TRUE(r.out.empty());
  }
  EXPECT_TRUE(contains(score({ckpt, "--tokens", ids, "--text", text}).err, "not both"));
  EXPECT_TRUE(contains(score({ckpt, "--bogus", "x"}).err, "unknown option '--bogus'"));

  const Scored h = score({"--help"});
  EXPECT_EQ(h.rc, 0);
  EXPECT_TRUE(contains(h.out, "usage: rotor score CHECKPOINT_DIR")) << h.out;
  EXPECT_TRUE(h.err.empty());

  // --tokens=FILE works like --tokens FILE.
  EXPECT_EQ(score({ckpt, "--tokens=" + ids}).out, score({ckpt, "--tokens", ids}).out);

  // An unwritable --logits: status 1, the path named.
  const std::string out = saved().dir + "/no-such-dir/logits.f32";
  const Scored l = score({ckpt, "--tokens", ids, "--logits", out});
  EXPECT_EQ(l.rc, 1);
  EXPECT_TRUE(contains(l.err, out + ": cannot open for writing")) << l.err;
}

}  // namespace
}  // namespace rotor
