// `rotor train` from llm.c token shards: a recipe names a glob of two GPT-2
// shards (written byte for byte as llm.c's write_datafile writes them), the
// format detected; the run trains, its loss falls, and it is the same run as
// one naming the two shards' documents as a Megatron indexed dataset. A glob
// that matches nothing stops the run with the glob named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/indexed_dataset.h"
#include "kernels/random.h"
#include "tests/common/llmc_datafile.h"
#include "trainer/cli/train_command.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kEot = 50256;

// Documents of a small repeating "language" (token k followed by k + 1 mod 64,
// with a random start), each after <|endoftext|>, cut into two shards in the
// middle of a document as llm.c's fineweb.py cuts them.
std::vector<std::vector<uint32_t>> documents() {
  std::vector<std::vector<uint32_t>> docs;
  for (int d = 0; d < 24; ++d) {
    std::vector<uint32_t> doc = {kEot};
    uint32_t t = static_cast<uint32_t>(mix64(d) % 64);
    for (int k = 0; k < 40 + d; ++k, t = (t + 1) % 64) doc.push_back(t);
    docs.push_back(doc);
  }
  return docs;
}

void write_shards(const std::string& dir) {
  std::vector<uint32_t> stream;
  for (const auto& doc : documents()) stream.insert(stream.end(), doc.begin(), doc.end());
  const size_t cut = stream.size() / 2 + 7;
  testing::write_llmc_datafile(dir + "/tiny_train_000000.bin",
                               std::vector<uint32_t>(stream.begin(), stream.begin() + cut));
  testing::write_llmc_datafile(dir + "/tiny_train_000001.bin",
                               std::vector<uint32_t>(stream.begin() + cut, stream.end()));
}

// The same documents as a Megatron indexed dataset.
std::string write_indexed(const std::string& dir) {
  auto w = IndexedDatasetWriter::create(dir + "/tiny", TokenDType::kUint16);
  EXPECT_TRUE(w.ok()) << w.status();
  for (const auto& doc : documents()) {
    EXPECT_TRUE(w->add_sequence(std::vector<int64_t>(doc.begin(), doc.end())).ok());
    w->end_document();
  }
  EXPECT_TRUE(w->finalize().ok());
  return dir + "/tiny";
}

std::string write_recipe(const std::string& dir, const std::string& dataset) {
  const std::string path = dir + "/llmc.yaml";
  std::ofstream(path) << "model: {vocab_size: 50304, hidden_size: 16, intermediate_size: 32,\n"
                         "        num_hidden_layers: 1, num_attention_heads: 2}\n"
                         "data: {datasets: [" << dataset << "], sequence_length: 32,\n"
                         "       document_masking: true}\n"
                         "train: {steps: 6, global_batch_size: 4, micro_batch_size: 2, lr: 3.0e-2,\n"
                         "        warmup_steps: 1, seed: 3}\n";
  return path;
}

std::vector<double> losses(const std::string& run_dir) {
  std::vector<double> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

TEST(TrainLlmc, GlobOfTwoShardsTrains) {
  const std::string dir = ::testing::TempDir() + "/train_llmc";
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_shards(dir);
  const std::string recipe = write_recipe(dir, "{path: \"" + dir + "/tiny_train_*.bin\"}");
  std::ostringstream out, err;
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/run"}, out, err), 0) << err.str();
  const std::vector<double> llmc = losses(dir + "/run");
  ASSERT_EQ(llmc.size(), 6u);
  EXPECT_LT(llmc.back(), llmc.front() - 1.0) << "the loss falls from about ln(50304)";

  // The same documents from an indexed dataset: the same samples, the same run.
  const std::string indexed = write_indexed(dir);
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/indexed", "--set",
                               "data.datasets=[{path: " + indexed + "}]"},
                              out, err),
            0)
      << err.str();
  EXPECT_EQ(losses(dir + "/indexed"), llmc);

  // format: llmc on a glob that matches nothing: the glob is named.
  std::ostringstream out2, err2;
  EXPECT_NE(run_train_command({recipe, "--set", "run.dir=" + dir + "/none", "--set",
                               "data.datasets=[{path: " + dir + "/val_*.bin, format: llmc}]"},
                              out2, err2),
            0);
  EXPECT_NE(err2.str().find(dir + "/val_*.bin: no file matches"), std::string::npos) << err2.str();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rotor
