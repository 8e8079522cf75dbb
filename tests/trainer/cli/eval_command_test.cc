// `rotor eval`: on a tiny saved run, `ppl` writes ppl.csv with the exact
// header whose perplexity equals exp(mean token loss) from `rotor score`'s
// code path (score_tokens) on the same windows, with buckets adding up;
// `attention` writes attention.csv with the exact header (JS against the same
// checkpoint is 0); bad options and files are errors that name them.
#include "trainer/loading.h"
#include "trainer/cli/eval_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "data/indexed_dataset.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.h"
#include "trainer/cli/score_command.h"
#include "tests/trainer/tiny_checkpoint.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

const std::vector<int64_t> kDocLengths = {40, 10, 50, 20, 70};

std::vector<int32_t> doc_tokens(int64_t doc, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(mix64(doc * 977 + i) % 260);
  return t;
}

struct TinyRun {
  std::string dir, recipe, run_dir, checkpoint;
};

// A run directory with one checkpoint (step 4) of a tiny model, its recipe
// (eval.lengths [16, 32]) and a held-out dataset of kDocLengths documents.
const TinyRun& run() {
  static const TinyRun s = [] {
    TinyRun s;
    s.dir = ::testing::TempDir() + "/eval_command_test_" + std::to_string(getpid());
    fs::remove_all(s.dir);
    fs::create_directories(s.dir);
    s.run_dir = s.dir + "/tiny-run";
    absl::StatusOr<IndexedDatasetWriter> w = IndexedDatasetWriter::create(s.dir + "/heldout", TokenDType::kUint16);
    EXPECT_TRUE(w.ok()) << w.status();
    for (size_t d = 0; d < kDocLengths.size(); ++d) {
      const std::vector<int32_t> t = doc_tokens(static_cast<int64_t>(d), kDocLengths[d]);
      const std::vector<int64_t> wide(t.begin(), t.end());
      EXPECT_TRUE(w->add_sequence(wide).ok());
      w->end_document();
    }
    EXPECT_TRUE(w->finalize().ok());
    s.recipe = s.dir + "/tiny.yaml";
    std::ofstream(s.recipe)
        << "model: {vocab_size: 260, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,\n"
           "        num_attention_heads: 2, num_key_value_heads: 1, initializer_range: 0.3}\n"
           "rope: {method: none, theta: 10000}\n"
           "logit_scale: {kind: log_position, base_length: 8, skip_layers: [0]}\n"
           "data: {datasets: [{path: " << s.dir << "/no-such-corpus}], heldout: " << s.dir << "/heldout,\n"
           "       sequence_length: 16, tokenizer: bytes}\n"
           "train: {steps: 4, global_batch_size: 1, micro_batch_size: 1, lr: 1.0e-3, seed: 5}\n"
           "eval: {lengths: [16, 32], tokens: 64}\n"
           "run: {dir: " << s.run_dir << "}\n";
    s.checkpoint = testing::save_tiny_checkpoint(s.recipe, s.run_dir, 4, 21);
    return s;
  }();
  return s;
}

struct Result {
  int code;
  std::string out, err;
};

Result eval_cmd(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = run_eval_command(args, out, err);
  return {code, out.str(), err.str()};
}

std::vector<std::vector<std::string>> read_csv(const std::string& path, std::string& header) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  std::getline(in, header);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(absl::StrSplit(line, ','));
  return rows;
}

double num(const std::string& s) {
  double x = 0;
  EXPECT_TRUE(absl::SimpleAtod(s, &x)) << s;
  return x;
}

TEST(EvalCommand, PplCsvMatchesScore) {
  const TinyRun& s = run();
  const std::string out_dir = s.dir + "/ppl-out";
  const Result r = eval_cmd({"ppl", s.recipe, "--out", out_dir, "--documents", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("length"), std::string::npos) << r.out;
  std::string header;
  const auto rows = read_csv(out_dir + "/ppl.csv", header);
  EXPECT_EQ(header, "run,step,train_length,length,bucket,documents,tokens,loss,ppl");
  for (int64_t length : {16, 32}) {
    // The reference: score_tokens on each used document's first L+1 tokens.
    double nll = 0;
    int64_t scored = 0, used = 0;
    for (size_t d = 0; d < kDocLengths.size() && used < 2; ++d) {
      if (kDocLengths[d] < length + 1) continue;
      ++used;
      const std::vector<int32_t> t = doc_tokens(static_cast<int64_t>(d), length + 1);
      absl::StatusOr<ScoreResult> sr = score_tokens(s.checkpoint, t);
      ASSERT_TRUE(sr.ok()) << sr.status();
      nll += sr->nll_sum;
      scored += sr->scored;
    }
    ASSERT_TRUE(std::isfinite(nll) && nll > 0);
    const double want = nll / static_cast<double>(scored);
    int64_t bucket_tokens = 0, all_tokens = -1;
    double bucket_loss = 0, all_loss = 0;
    for (const auto& row : rows) {
      ASSERT_EQ(row.size(), 9u);
      if (num(row[3]) != static_cast<double>(length)) continue;
      EXPECT_EQ(row[0], "tiny-run");
      EXPECT_EQ(row[1], "4");
      EXPECT_EQ(row[2], "16");
      EXPECT_EQ(row[5], "2");
      // ppl = exp(loss); both printed with 8 significant digits.
      EXPECT_NEAR(num(row[8]), std::exp(num(row[7])), 1e-6 * num(row[8]));
      if (row[4] == "all") {
        all_tokens = static_cast<int64_t>(num(row[6]));
        all_loss = num(row[7]);
      } else {
        bucket_tokens += static_cast<int64_t>(num(row[6]));
        bucket_loss += num(row[6]) * num(row[7]);
      }
    }
    EXPECT_EQ(all_tokens, scored);
    // score: f32 logits, log-softmax in f64; eval: the fused f32 cross-entropy. ~1e-6 relative.
    EXPECT_NEAR(all_loss, want, 1e-5 * want) << "length " << length;
    EXPECT_EQ(bucket_tokens, all_tokens);
    EXPECT_NEAR(bucket_loss, all_loss * static_cast<double>(all_tokens), 1e-6 * bucket_loss);  // 8-digit CSV
  }
}

TEST(EvalCommand, PplDefaultsToRunDirAndStride) {
  const TinyRun& s = run();
  const Result r = eval_cmd({"ppl", s.recipe, "--stride", "8"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(s.run_dir + "/eval/ppl.csv"));
}

TEST(EvalCommand, AttentionCsv) {
  const TinyRun& s = run();
  const std::string out_dir = s.dir + "/attn-out";
  const Result r = eval_cmd({"attention", s.recipe, "--length", "16", "--reference", s.checkpoint, "--out", out_dir});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string header;
  const auto rows = read_csv(out_dir + "/attention.csv", header);
  EXPECT_EQ(header, "run,step,length,layer,head,bucket,metric,value,reference");
  int entropy = 0, distance = 0, js = 0;
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), 9u);
    EXPECT_EQ(row[2], "16");
    const double v = num(row[7]);
    ASSERT_TRUE(std::isfinite(v));
    if (row[6] == "entropy") {
      ++entropy;
      if (row[5] == "all") EXPECT_GT(v, 0.0);
      EXPECT_EQ(row[8], "");
    } else if (row[6] == "distance") {
      ++distance;
      EXPECT_GE(v, 0.0);
    } else {
      ASSERT_EQ(row[6], "js_divergence");
      ++js;
      EXPECT_EQ(v, 0.0) << "the checkpoint against itself";
      EXPECT_EQ(row[8], s.checkpoint);
    }
  }
  // 2 layers x (2 heads + mean) x ("all" + 3 buckets of 16 at width 4).
  EXPECT_EQ(entropy, 2 * 3 * 4);
  EXPECT_EQ(distance, entropy);
  EXPECT_EQ(js, entropy);
}

TEST(EvalCommand, ErrorsNameTheOptionOrFile) {
  const TinyRun& s = run();
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{"ppl", s.recipe, "--bogus"}, 2, "--bogus"},
      {{"ppl", s.recipe, "--stride", "x"}, 2, "--stride"},
      {{"ppl", s.recipe, "--documents", "0"}, 2, "--documents"},
      {{"attention", s.recipe, "--stride", "4"}, 2, "--stride"},
      {{"ppl", s.recipe, "--length", "4"}, 2, "--length"},
      {{"ppl", s.dir + "/missing.yaml"}, 2, "missing.yaml"},
      {{"ppl", s.recipe, "--checkpoint", s.dir + "/nowhere"}, 2, "nowhere"},
      {{"ppl", s.recipe, "--set", "eval.lengths=[]"}, 2, "eval.lengths"},
      {{"ppl", s.recipe, "--set", "data.heldout=" + s.dir + "/nothing"}, 2, "data.heldout"},
      {{"attention", s.recipe, "--length", "200"}, 2, "--length"},
      {{"attention", s.recipe, "--reference", s.dir + "/noref"}, 2, "--reference"},
      {{"passkey", s.recipe, "--trials", "0"}, 2, "--trials"},
      {{"frob", s.recipe}, 2, "frob"},
      {{}, 2, "ppl"},
      {{"ppl"}, 2, "RECIPE"},
  };
  for (const Case& c : cases) {
    const Result r = eval_cmd(c.args);
    EXPECT_EQ(r.code, c.code) << c.named << ": " << r.err;
    EXPECT_NE(r.err.find(c.named), std::string::npos) << r.err;
  }
  const Result help = eval_cmd({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("rotor eval ppl"), std::string::npos);
}

}  // namespace
}  // namespace rotor
