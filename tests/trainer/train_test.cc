// `rotor train` end to end on real text (the GPL-3 text Debian ships, as
// bytes): the loss falls, metrics.jsonl has a record per step, and a run
// killed after a checkpoint resumes to exactly the losses of the
// uninterrupted run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/indexed_dataset.h"
#include "trainer/train.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

std::string write_corpus(const std::string& dir) {
  std::ifstream in("/usr/share/common-licenses/GPL-3");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() < 20000) text = std::string(20000, 'a');  // no license file: still runs
  const std::string prefix = dir + "/corpus";
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kUint16);
  EXPECT_TRUE(w.ok()) << w.status();
  // One document per paragraph block of ~2000 bytes, each ending in eos (257).
  for (size_t at = 0; at + 2000 <= text.size(); at += 2000) {
    std::vector<int64_t> toks;
    for (size_t i = at; i < at + 2000; ++i) toks.push_back(static_cast<unsigned char>(text[i]));
    toks.push_back(257);
    EXPECT_TRUE(w->add_sequence(toks).ok());
    w->end_document();
  }
  EXPECT_TRUE(w->finalize().ok());
  return prefix;
}

std::string write_recipe(const std::string& dir, const std::string& corpus) {
  const std::string path = dir + "/tiny.yaml";
  std::ofstream(path) << "model: {vocab_size: 260, hidden_size: 32, intermediate_size: 64,\n"
                         "        num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2}\n"
                         "rope: {method: none, theta: 10000}\n"
                         "data: {datasets: [{path: " << corpus << "}], heldout: " << corpus << ",\n"
                         "       sequence_length: 64, document_masking: true}\n"
                         "train: {steps: 12, global_batch_size: 4, micro_batch_size: 2, lr: 1.0e-2,\n"
                         "        min_lr: 1.0e-3, warmup_steps: 2, seed: 5}\n"
                         "checkpoint: {interval: 6, keep: 3}\n"
                         "eval: {interval: 6, lengths: [64, 128]}\n";
  return path;
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Train, LossFallsAndResumeIsExact) {
  const std::string dir = ::testing::TempDir() + "/train_e2e";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = write_corpus(dir);
  const std::string recipe = write_recipe(dir, corpus);
  std::ostringstream out, err;

  const std::string run_a = dir + "/a";
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_a}, out, err), 0) << err.str();
  const std::vector<nlohmann::json> a = read_metrics(run_a);
  ASSERT_EQ(a.size(), 12u);
  EXPECT_LT(a.back()["loss"].get<double>(), a.front()["loss"].get<double>() - 1.0)
      << "byte-level loss should fall by > 1 nat in 12 steps";
  EXPECT_TRUE(a[5].contains("eval_loss_128")) << a[5].dump();
  EXPECT_NE(out.str().find("step 12/12 | loss"), std::string::npos) << out.str();

  // Run B: the same recipe, "killed" after the step-6 checkpoint.
  const std::string run_b = dir + "/b";
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_b}, out, err), 0) << err.str();
  fs::remove_all(run_b + "/checkpoints/step_00000012");
  std::ofstream(run_b + "/checkpoints/latest") << "step_00000006\n";
  {
    std::vector<nlohmann::json> b = read_metrics(run_b);
    std::ofstream m(run_b + "/metrics.jsonl", std::ios::trunc);
    for (size_t i = 0; i < 6; ++i) m << b[i].dump() << "\n";
  }
  std::ostringstream out2;
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_b}, out2, err), 0) << err.str();
  EXPECT_NE(out2.str().find("resumed from"), std::string::npos) << out2.str();
  const std::vector<nlohmann::json> b = read_metrics(run_b);
  ASSERT_EQ(b.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(b[i]["loss"].get<double>(), a[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(b[i]["grad_norm"].get<double>(), a[i]["grad_norm"].get<double>()) << "step " << i + 1;
  }
}

// Continual pretraining: a second run starts from the first run's weights
// (model.init_from) with a longer sequence and another RoPE base, and its
// first loss is far below a fresh model's.
TEST(Train, InitFromAnotherRun) {
  const std::string dir = ::testing::TempDir() + "/train_init_from";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = write_corpus(dir);
  const std::string recipe = write_recipe(dir, corpus);
  std::ostringstream out, err;
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/base"}, out, err), 0) << err.str();
  const double base_first = read_metrics(dir + "/base").front()["loss"].get<double>();
  const double base_last = read_metrics(dir + "/base").back()["loss"].get<double>();
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/long", "--set",
                               "model.init_from=" + dir + "/base", "--set", "data.sequence_length=128",
                               "--set", "rope.theta=40000", "--set", "train.steps=2"},
                              out, err),
            0)
      << err.str();
  EXPECT_NE(out.str().find("initialised from " + dir + "/base/checkpoints/step_00000012"),
            std::string::npos)
      << out.str();
  const double long_first = read_metrics(dir + "/long").front()["loss"].get<double>();
  EXPECT_LT(long_first, base_first - 0.5 * (base_first - base_last)) << "weights were not loaded";
  EXPECT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/bad", "--set",
                               "model.init_from=" + dir + "/nothing"},
                              out, err),
            1);
  EXPECT_NE(err.str().find("model.init_from"), std::string::npos) << err.str();
}

TEST(Train, RecipeErrorsExitWithStatus2) {
  std::ostringstream out, err;
  EXPECT_EQ(run_train_command({"/nonexistent/recipe.yaml"}, out, err), 2);
  EXPECT_NE(err.str().find("/nonexistent/recipe.yaml"), std::string::npos) << err.str();
  EXPECT_EQ(run_train_command({}, out, err), 2);
}

}  // namespace
}  // namespace rotor
