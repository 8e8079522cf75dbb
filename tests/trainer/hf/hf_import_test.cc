// `rotor import-hf` of a Hugging Face directory that rotor did not write: a
// small random LlamaForCausalLM (vocabulary 101, no tokenizer files). The
// imported checkpoint's recipe names no tokenizer (the directory has none, so
// there is no byte tokenizer and no vocabulary check for one); `rotor score`
// of a token file gives exactly the log-probabilities of the same weights
// loaded straight from model.safetensors; --text is refused, naming
// data.tokenizer; `rotor export-hf --dtype f32` gives the weights back bit
// for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/score.h"
#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/cli/hf_command.h"
#include "trainer/cli/score_command.h"
#include "trainer/hf/config.h"
#include "trainer/safetensors.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string scratch() {
  const std::string d = ::testing::TempDir() + "/hf_import_test_" + std::to_string(getpid());
  fs::create_directories(d);
  return d;
}

const json kConfig = {
    {"architectures", {"LlamaForCausalLM"}},
    {"model_type", "llama"},
    {"vocab_size", 101},
    {"hidden_size", 16},
    {"intermediate_size", 24},
    {"num_hidden_layers", 2},
    {"num_attention_heads", 4},
    {"num_key_value_heads", 2},
    {"max_position_embeddings", 64},
    {"rms_norm_eps", 1e-5},
    {"rope_theta", 10000.0},
    {"hidden_act", "silu"},
    {"tie_word_embeddings", false},
    {"torch_dtype", "float32"},
};

// The model config.json describes, with zero weights (names and shapes).
LlamaModel model_of(const json& config) {
  absl::StatusOr<HfModel> hf = parse_hf_config(config, "config.json");
  EXPECT_TRUE(hf.ok()) << hf.status();
  hf->config.rope_theta = hf->rope.theta;
  LlamaOptions options;
  options.rope = hf->rope;
  options.logit_scale = hf->logit_scale;
  absl::StatusOr<LlamaModel> m = LlamaModel::create(hf->config, options);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// An HF directory: config.json and model.safetensors with random f32 weights
// (uniform in [-0.5, 0.5), every parameter by its HF name).
std::string write_hf_dir(const std::string& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << kConfig.dump(2);
  LlamaModel m = model_of(kConfig);
  std::vector<NamedTensor> tensors;
  uint64_t seed = 41;
  for (const Parameter& p : m.parameters()) {
    Tensor t = Tensor::zeros(p.global_shape, DType::kF32);
    fill_uniform(t, seed++, -0.5, 0.5);
    tensors.push_back({p.name, t});
  }
  EXPECT_TRUE(write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}).ok());
  return dir;
}

struct CmdResult {
  int rc;
  std::string out, err;
};

template <class Command>
CmdResult run(Command command, const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int rc = command(args, out, err);
  return {rc, out.str(), err.str()};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every tensor of a safetensors file as f32 values, by name.
std::map<std::string, std::vector<float>> f32_tensors(const std::string& path) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  std::map<std::string, std::vector<float>> out;
  if (!f.ok()) return out;
  for (const SafetensorsEntry& e : f->entries()) {
    EXPECT_EQ(e.dtype, "F32") << e.name;
    Tensor t = Tensor::zeros(Shape(e.shape), DType::kF32);
    EXPECT_TRUE(f->read_into(e.name, t).ok()) << e.name;
    out[e.name].assign(t.data<float>(), t.data<float>() + t.numel());
  }
  return out;
}

TEST(HfImportForeign, Vocab101WithoutTokenizerImportsScoresAndExportsExactly) {
  const std::string dir = scratch();
  const std::string hf = write_hf_dir(dir + "/hf");
  const std::string ckpt = dir + "/ckpt", back = dir + "/back";
  fs::remove_all(ckpt);
  fs::remove_all(back);

  CmdResult r = run(run_import_hf_command, {hf, ckpt});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string recipe = read_text(ckpt + "/recipe.yaml");
  EXPECT_EQ(recipe.find("tokenizer:"), std::string::npos) << recipe;  // no data.tokenizer key
  EXPECT_EQ(recipe.find("datasets"), std::string::npos) << recipe;   // nor invented data
  EXPECT_NE(recipe.find("vocab_size: 101"), std::string::npos) << recipe;

  // Scoring a token file: the log-probabilities of the HF weights themselves.
  std::vector<int32_t> ids;
  std::string text;
  for (int i = 0; i < 40; ++i) {
    ids.push_back(static_cast<int32_t>(mix64(500 + i) % 101));
    text += std::to_string(ids.back()) + (i % 10 == 9 ? "\n" : " ");
  }
  const std::string tokens = dir + "/tokens.txt";
  std::ofstream(tokens) << text;
  r = run(run_score_command, {ckpt, "--tokens", tokens});
  ASSERT_EQ(r.rc, 0) << r.err;
  LlamaModel reference = model_of(kConfig);
  absl::StatusOr<SafetensorsFile> weights = SafetensorsFile::open(hf + "/model.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  for (Parameter& p : reference.parameters()) ASSERT_TRUE(weights->read_into(p.name, p.value).ok()) << p.name;
  absl::StatusOr<ScoreResult> want = score_ids(reference, ids, false);
  ASSERT_TRUE(want.ok()) << want.status();
  std::istringstream lines(r.out);
  size_t n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const json j = json::parse(line);
    ASSERT_LT(n, ids.size());
    EXPECT_EQ(j["index"], n);
    EXPECT_EQ(j["token"], ids[n]);
    if (n == 0) {
      EXPECT_TRUE(j["logprob"].is_null());
    } else {
      EXPECT_EQ(j["logprob"].get<double>(), want->logprobs[n]) << n;
    }
  }
  EXPECT_EQ(n, ids.size());

  // Text needs a tokenizer, and the recipe names none.
  const std::string words = dir + "/words.txt";
  std::ofstream(words) << "hello";
  r = run(run_score_command, {ckpt, "--text", words});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("names no data.tokenizer"), std::string::npos) << r.err;

  // Exported again in f32: the same tensors, bit for bit, and the same sizes.
  r = run(run_export_hf_command, {ckpt, back, "--dtype", "f32"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto a = f32_tensors(hf + "/model.safetensors"), b = f32_tensors(back + "/model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, values] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    ASSERT_EQ(values.size(), b.at(name).size()) << name;
    EXPECT_EQ(std::memcmp(values.data(), b.at(name).data(), values.size() * sizeof(float)), 0) << name;
  }
  const json config = json::parse(read_text(back + "/config.json"));
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "max_position_embeddings"})
    EXPECT_EQ(config[key], kConfig[key]) << key;
  const json gen = json::parse(read_text(back + "/generation_config.json"));
  EXPECT_FALSE(gen.contains("bos_token_id")) << "no tokenizer, no invented ids";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rotor
