// `rotor eval passkey|needle`: on a tiny saved checkpoint the command writes
// <out>/<kind>.csv with the exact header and one row per (length, depth)
// cell, takes the run name and checkpoint step, defaults the output to
// <run.dir>/eval, reads the needle haystack from data.heldout, and reports
// bad options and files by name with status 2.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.h"
#include "trainer/cli/retrieval_command.h"
#include "tests/trainer/tiny_checkpoint.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

struct Saved {
  std::string dir;       // scratch
  std::string recipe;    // <dir>/tiny.yaml
  std::string run_dir;   // <dir>/tiny
  std::string heldout;   // <dir>/heldout (dataset prefix)
};

const Saved& saved() {
  static const Saved s = [] {
    Saved s;
    s.dir = ::testing::TempDir() + "/retrieval_command_test_" + std::to_string(getpid());
    fs::remove_all(s.dir);
    fs::create_directories(s.dir);
    s.run_dir = s.dir + "/tiny";
    s.heldout = s.dir + "/heldout";
    s.recipe = s.dir + "/tiny.yaml";
    // Held-out "real" text for the needle haystack, as byte tokens.
    absl::StatusOr<IndexedDatasetWriter> w = IndexedDatasetWriter::create(s.heldout, TokenDType::kUint16);
    EXPECT_TRUE(w.ok()) << w.status();
    for (int doc = 0; doc < 4; ++doc) {
      std::vector<int64_t> ids;
      std::string text;
      for (int i = 0; text.size() < 300; ++i)
        text += "Report " + std::to_string(doc) + " line " + std::to_string(i) + " says little. ";
      for (unsigned char c : text) ids.push_back(c);
      EXPECT_TRUE(w->add_sequence(ids).ok());
      w->end_document();
    }
    EXPECT_TRUE(w->finalize().ok());
    std::ofstream(s.recipe)
        << "model: {vocab_size: 260, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,\n"
           "        num_attention_heads: 2, num_key_value_heads: 1}\n"
           "rope: {method: none, theta: 10000}\n"
           "logit_scale: {kind: log_position, base_length: 64, skip_layers: [0]}\n"
           "data: {datasets: [{path: " << s.dir << "/no-such-corpus}], sequence_length: 256,\n"
           "       heldout: " << s.heldout << ", tokenizer: bytes}\n"
           "train: {steps: 7, global_batch_size: 1, micro_batch_size: 1, lr: 1.0e-3, seed: 5}\n"
           "run: {dir: " << s.run_dir << "}\n";
    testing::save_tiny_checkpoint(s.recipe, s.run_dir, 7, 3);
    return s;
  }();
  return s;
}

struct Result {
  int code;
  std::string out, err;
};

Result run(const std::string& kind, const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = run_eval_retrieval(kind, args, out, err);
  return {code, out.str(), err.str()};
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(RetrievalCommand, PasskeyWritesOneRowPerCell) {
  const Saved& s = saved();
  const std::string out_dir = s.dir + "/out_passkey";
  const Result r = run("passkey", {s.recipe, "--out", out_dir, "--lengths", "250,300",
                                   "--depths=0,0.5,1", "--trials", "2", "--seed", "0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("passkey length 300 depth 0.5: "), std::string::npos) << r.out;
  const std::vector<std::string> lines = lines_of(out_dir + "/passkey.csv");
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[0], "run,step,length,depth,trials,passed,pass_rate,mean_entropy");
  EXPECT_EQ(lines[1].rfind("tiny,7,250,0,2,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("tiny,7,250,0.5,2,", 0), 0u) << lines[2];
  EXPECT_EQ(lines[6].rfind("tiny,7,300,1,2,", 0), 0u) << lines[6];
}

TEST(RetrievalCommand, NeedleUsesTheHeldoutDataAndTheRunsEvalDir) {
  const Saved& s = saved();
  // --checkpoint names the checkpoint directory itself; --set changes the RoPE at eval time.
  const Result r = run("needle", {s.recipe, "--checkpoint", s.run_dir + "/checkpoints/step_00000007",
                                  "--lengths", "300", "--depths", "0.25", "--trials", "1", "--set",
                                  "rope.method=dynamic", "--set", "rope.factor=2", "--set",
                                  "rope.original_max_position=128"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = lines_of(s.run_dir + "/eval/needle.csv");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "run,step,length,depth,trials,passed,pass_rate,mean_entropy");
  EXPECT_EQ(lines[1].rfind("tiny,7,300,0.25,1,", 0), 0u) << lines[1];
}

TEST(RetrievalCommand, ErrorsNameTheOptionOrFile) {
  const Saved& s = saved();
  struct Case {
    std::string kind;
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {"passkey", {s.recipe, "--bogus"}, "unknown option '--bogus'"},
      {"passkey", {s.recipe, "--lengths", "12,x"}, "--lengths: 'x' is not a positive integer"},
      {"passkey", {s.recipe, "--depths", "0,1.5"}, "--depths: '1.5' is not a depth in [0, 1]"},
      {"passkey", {s.recipe, "--trials", "0"}, "--trials: '0' is not a positive integer"},
      {"passkey", {s.recipe, "--trials"}, "--trials needs a value"},
      {"passkey", {s.recipe, "--seed=-3"}, "--seed: '-3' is not a non-negative integer"},
      {"passkey", {}, "RECIPE.yaml is required"},
      {"passkey", {s.dir + "/missing.yaml"}, "missing.yaml"},
      {"passkey", {s.recipe, "--checkpoint", s.dir + "/nowhere"}, s.dir + "/nowhere"},
      {"passkey", {s.recipe, "--lengths", "40"}, "length 40 is too short for the passkey prompt"},
      {"needle", {s.recipe, "--set", "data.heldout=" + s.dir + "/nothing"}, s.dir + "/nothing"},
      {"needle", {s.recipe, "--lengths", "5000"}, "the needle haystack needs 5000"},
      {"maze", {s.recipe}, "unknown retrieval evaluation"},
  };
  for (const Case& c : cases) {
    const Result r = run(c.kind, c.args);
    EXPECT_EQ(r.code, 2) << c.message << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "want '" << c.message << "' in:\n" << r.err;
  }
  EXPECT_EQ(run("passkey", {"--help"}).code, 0);
}

}  // namespace
}  // namespace rotor
