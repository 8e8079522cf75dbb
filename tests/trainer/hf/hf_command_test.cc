// `rotor export-hf` / `rotor import-hf`: a tiny checkpoint exported (f32),
// imported back and exported again gives bit-identical tensors and the same
// config.json, and the imported checkpoint scores exactly like the original;
// sharding writes a correct index that import reads; bf16 export is the
// round-to-nearest-even of the f32 weights; tied embeddings with and without
// lm_head.weight; inv_freq ignored; errors name what is wrong.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/random.h"
#include "model/llama.h"
#include "trainer/loading.h"
#include "trainer/checkpoint.h"
#include "trainer/cli/hf_command.h"
#include "trainer/optimizer.h"
#include "trainer/recipe/recipe.h"
#include "trainer/safetensors.h"
#include "trainer/cli/score_command.h"
#include "tests/trainer/tiny_checkpoint.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct CmdResult {
  int rc;
  std::string out, err;
};

CmdResult export_hf(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int rc = run_export_hf_command(args, out, err);
  return {rc, out.str(), err.str()};
}

CmdResult import_hf(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int rc = run_import_hf_command(args, out, err);
  return {rc, out.str(), err.str()};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

const std::string& scratch() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "/hf_command_test_" + std::to_string(getpid());
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// A checkpoint (step 2) of a tiny GQA model; `tied` picks tie_word_embeddings.
std::string make_checkpoint(const std::string& name, bool tied, const std::string& rope,
                            const std::string& logit_scale) {
  const std::string dir = scratch() + "/" + name;
  const std::string recipe_path = dir + ".yaml";
  std::ofstream(recipe_path)
      << "model: {vocab_size: 260, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,\n"
         "        num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32,\n"
         "        tie_word_embeddings: " << (tied ? "true" : "false") << "}\n"
         "rope: " << rope << "\n"
         "logit_scale: " << logit_scale << "\n"
         "data: {datasets: [{path: " << dir << "/no-such-corpus}], sequence_length: 64,\n"
         "       tokenizer: bytes}\n"
         "train: {steps: 2, global_batch_size: 1, micro_batch_size: 1, lr: 1.0e-3, seed: 5}\n"
         "run: {dir: " << dir << "}\n";
  return testing::save_tiny_checkpoint(recipe_path, dir, 2, 23);
}

// yarn with the exported max_position_embeddings (64 = data.sequence_length)
// = factor * original_max_position; a logit scalar.
const std::string& untied_checkpoint() {
  static const std::string c = make_checkpoint(
      "untied", false,
      "{method: yarn, theta: 10000, factor: 4, original_max_position: 16, beta_fast: 16}",
      "{kind: log_position, base_length: 8, skip_layers: [0]}");
  return c;
}

const std::string& tied_checkpoint() {
  static const std::string c =
      make_checkpoint("tied", true, "{method: none, theta: 500000}", "{kind: none}");
  return c;
}

// A safetensors file read independently of rotor's reader: name -> (dtype, shape, bytes).
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::map<std::string, RawTensor> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  uint64_t n = 0;
  std::memcpy(&n, data.data(), 8);
  const json header = json::parse(data.substr(8, n));
  std::map<std::string, RawTensor> out;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      EXPECT_EQ(e.value("format", ""), "pt") << path;
      continue;
    }
    const uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
    out[name] = {e["dtype"], e["shape"].get<std::vector<int64_t>>(), data.substr(8 + n + b, end - b)};
  }
  return out;
}

// Every tensor of an HF directory (single file or shards).
std::map<std::string, RawTensor> read_hf(const std::string& dir) {
  if (!fs::exists(dir + "/model.safetensors.index.json")) return read_raw(dir + "/model.safetensors");
  std::map<std::string, RawTensor> all;
  const json index = json::parse(std::ifstream(dir + "/model.safetensors.index.json"));
  std::map<std::string, std::map<std::string, RawTensor>> files;
  for (const auto& [name, file] : index["weight_map"].items()) {
    const std::string f = file.get<std::string>();
    if (!files.count(f)) files[f] = read_raw(dir + "/" + f);
    EXPECT_TRUE(files[f].count(name)) << name << " not in " << f;
    all[name] = files[f][name];
  }
  return all;
}

json read_json(const std::string& path) { return json::parse(std::ifstream(path)); }

// The f32 tensors of an HF directory, as NamedTensors (to write modified copies).
std::vector<NamedTensor> hf_tensors(const std::string& dir) {
  std::vector<NamedTensor> out;
  for (const auto& [name, raw] : read_hf(dir)) {
    EXPECT_EQ(raw.dtype, "F32");
    Tensor t = Tensor::empty(Shape(raw.shape), DType::kF32);
    std::memcpy(t.data<float>(), raw.bytes.data(), raw.bytes.size());
    out.push_back({name, t});
  }
  return out;
}

// An f32 export of `ckpt` into scratch()/name.
std::string exported(const std::string& ckpt, const std::string& name) {
  const std::string dir = scratch() + "/" + name;
  fs::remove_all(dir);
  const CmdResult r = export_hf({ckpt, dir, "--dtype", "f32"});
  EXPECT_EQ(r.rc, 0) << r.err;
  return dir;
}

// A copy of an HF dir with its weights replaced by `tensors` in one file.
std::string hf_variant(const std::string& from, const std::string& name,
                       const std::vector<NamedTensor>& tensors) {
  const std::string dir = scratch() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(from + "/config.json", dir + "/config.json");
  EXPECT_TRUE(write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}).ok());
  return dir;
}

std::vector<double> logprobs(const std::string& ckpt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 80; ++i) ids.push_back(static_cast<int32_t>(mix64(77 + i) % 260));
  absl::StatusOr<ScoreResult> r = score_tokens(ckpt, ids);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->logprobs : std::vector<double>{};
}

void expect_same_tensors(const std::string& a, const std::string& b) {
  const auto ta = read_hf(a), tb = read_hf(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    EXPECT_EQ(t.dtype, tb.at(name).dtype) << name;
    EXPECT_EQ(t.shape, tb.at(name).shape) << name;
    EXPECT_TRUE(t.bytes == tb.at(name).bytes) << name << " differs";
  }
}

TEST(HfExport, RoundTripIsBitExact) {
  const std::string hf1 = scratch() + "/rt1", ck2 = scratch() + "/rt_ckpt", hf2 = scratch() + "/rt2";
  const std::string run_dir = fs::path(untied_checkpoint()).parent_path().parent_path().string();
  CmdResult r = export_hf({run_dir, hf1, "--dtype", "f32"});  // a run directory: its latest checkpoint
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "rotor_logit_scale")) << r.err;  // the warning
  const json config = read_json(hf1 + "/config.json");
  EXPECT_EQ(config["max_position_embeddings"], 64);
  EXPECT_EQ(config["torch_dtype"], "float32");
  EXPECT_TRUE(config.contains("rotor_logit_scale"));
  EXPECT_FALSE(fs::exists(hf1 + "/model.safetensors.index.json"));
  const json gen = read_json(hf1 + "/generation_config.json");
  EXPECT_EQ(gen["_from_model_config"], true);
  EXPECT_EQ(gen["bos_token_id"], 256);
  EXPECT_EQ(gen["eos_token_id"], 257);
  const auto t1 = read_hf(hf1);
  EXPECT_TRUE(t1.count("lm_head.weight"));
  EXPECT_EQ(t1.at("model.layers.1.self_attn.k_proj.weight").shape, (std::vector<int64_t>{8, 16}));
  // The exported f32 values are the checkpoint's.
  const auto orig = read_raw(untied_checkpoint() + "/model.safetensors");
  ASSERT_EQ(orig.size(), t1.size());
  for (const auto& [name, t] : orig) EXPECT_TRUE(t.bytes == t1.at(name).bytes) << name;

  r = import_hf({hf1, ck2});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(ck2 + "/state.json"));
  EXPECT_TRUE(fs::exists(ck2 + "/optimizer.safetensors"));
  std::stringstream recipe;
  recipe << std::ifstream(ck2 + "/recipe.yaml").rdbuf();
  // The model sections of config.json and nothing invented: no data sets, no training settings.
  EXPECT_TRUE(contains(recipe.str(), "num_hidden_layers")) << recipe.str();
  EXPECT_FALSE(contains(recipe.str(), "datasets")) << recipe.str();
  EXPECT_FALSE(contains(recipe.str(), "train:")) << recipe.str();
  r = export_hf({ck2, hf2, "--dtype=f32"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_json(hf2 + "/config.json"), config);
  expect_same_tensors(hf1, hf2);
  // The imported checkpoint scores exactly like the original.
  const std::vector<double> a = logprobs(untied_checkpoint()), b = logprobs(ck2);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 1; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;
  // Refuses to overwrite.
  r = export_hf({ck2, hf2});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "not empty")) << r.err;
  r = import_hf({hf1, ck2});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "not empty")) << r.err;
}

TEST(HfExport, ShardsAndIndex) {
  const std::string hf = scratch() + "/sharded", ck = scratch() + "/sharded_ckpt";
  CmdResult r = export_hf({untied_checkpoint(), hf, "--dtype", "f32", "--max-shard-size", "10KB"});
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(fs::exists(hf + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(hf + "/model.safetensors"));
  const json index = read_json(hf + "/model.safetensors.index.json");
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  ASSERT_GT(files.size(), 2u);
  uint64_t total = 0;
  int i = 1;
  for (const std::string& f : files) {
    char want[64];
    std::snprintf(want, sizeof want, "model-%05d-of-%05zu.safetensors", i++, files.size());
    EXPECT_EQ(f, want);
    const auto shard = read_raw(hf + "/" + f);
    uint64_t bytes = 0;
    for (const auto& [name, t] : shard) {
      bytes += t.bytes.size();
      EXPECT_EQ(index["weight_map"][name], f) << name;
    }
    // Every shard fits the limit, but for a lone tensor larger than it.
    if (shard.size() > 1) EXPECT_LE(bytes, 10000u) << f;
    total += bytes;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  const std::string single = exported(untied_checkpoint(), "unsharded");
  expect_same_tensors(hf, single);
  r = import_hf({hf, ck});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::vector<double> a = logprobs(untied_checkpoint()), b = logprobs(ck);
  for (size_t k = 1; k < a.size(); ++k) EXPECT_EQ(a[k], b[k]) << k;

  // A missing shard is named.
  const std::string broken = scratch() + "/sharded_missing";
  fs::remove_all(broken);
  fs::copy(hf, broken);
  const std::string gone = *files.rbegin();
  fs::remove(broken + "/" + gone);
  r = import_hf({broken, scratch() + "/sharded_missing_ckpt"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, gone)) << r.err;
  EXPECT_FALSE(fs::exists(scratch() + "/sharded_missing_ckpt/state.json"));
}

uint16_t bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

TEST(HfExport, Bf16IsTheRoundingOfF32) {
  const std::string f32 = exported(untied_checkpoint(), "bf16_ref");
  const std::string hf = scratch() + "/bf16";
  fs::remove_all(hf);
  const CmdResult r = export_hf({untied_checkpoint(), hf});  // default dtype bf16
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_json(hf + "/config.json")["torch_dtype"], "bfloat16");
  const auto a = read_hf(f32), b = read_hf(hf);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    const RawTensor& h = b.at(name);
    EXPECT_EQ(h.dtype, "BF16") << name;
    ASSERT_EQ(h.bytes.size() * 2, t.bytes.size()) << name;
    for (size_t i = 0; i < h.bytes.size() / 2; ++i) {
      float f;
      uint16_t got;
      std::memcpy(&f, t.bytes.data() + 4 * i, 4);
      std::memcpy(&got, h.bytes.data() + 2 * i, 2);
      ASSERT_EQ(got, bf16_rne(f)) << name << "[" << i << "]";
    }
  }
}

TEST(HfExport, TiedWithAndWithoutLmHead) {
  const std::string hf = exported(tied_checkpoint(), "tied_hf");
  const json config = read_json(hf + "/config.json");
  EXPECT_EQ(config["tie_word_embeddings"], true);
  std::vector<NamedTensor> tensors = hf_tensors(hf);
  for (const NamedTensor& t : tensors) EXPECT_NE(t.name, "lm_head.weight");
  const std::vector<double> ref = logprobs(tied_checkpoint());

  CmdResult r = import_hf({hf, scratch() + "/tied_ckpt"});
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<double> got = logprobs(scratch() + "/tied_ckpt");
  for (size_t k = 1; k < ref.size(); ++k) EXPECT_EQ(ref[k], got[k]) << k;

  // With lm_head.weight (a copy of the embedding, as some exporters write) and
  // a rotary inv_freq buffer: both ignored.
  std::vector<NamedTensor> more = tensors;
  for (const NamedTensor& t : tensors)
    if (t.name == "model.embed_tokens.weight") more.push_back({"lm_head.weight", t.tensor});
  more.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", Tensor::zeros(Shape{2}, DType::kF32)});
  const std::string hf2 = hf_variant(hf, "tied_hf_lm_head", more);
  r = import_hf({hf2, scratch() + "/tied_ckpt2"});
  ASSERT_EQ(r.rc, 0) << r.err;
  got = logprobs(scratch() + "/tied_ckpt2");
  for (size_t k = 1; k < ref.size(); ++k) EXPECT_EQ(ref[k], got[k]) << k;
}

TEST(HfImport, Errors) {
  const std::string hf = exported(untied_checkpoint(), "err_src");
  const std::vector<NamedTensor> tensors = hf_tensors(hf);

  // Missing config.json.
  {
    const std::string d = scratch() + "/no_config";
    fs::create_directories(d);
    const CmdResult r = import_hf({d, d + "_ckpt"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_TRUE(contains(r.err, "config.json")) << r.err;
  }
  // Unknown rope_type.
  {
    const std::string d = hf_variant(hf, "bad_rope", tensors);
    json c = read_json(d + "/config.json");
    c.erase("rope_parameters");
    c["rope_scaling"] = {{"rope_type", "frobnicate"}, {"factor", 2.0}};
    std::ofstream(d + "/config.json") << c.dump();
    const CmdResult r = import_hf({d, d + "_ckpt"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_TRUE(contains(r.err, "frobnicate")) << r.err;
  }
  // Missing tensor.
  {
    std::vector<NamedTensor> fewer;
    for (const NamedTensor& t : tensors)
      if (t.name != "model.layers.1.mlp.up_proj.weight") fewer.push_back(t);
    const std::string d = hf_variant(hf, "missing_tensor", fewer);
    const CmdResult r = import_hf({d, d + "_ckpt"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_TRUE(contains(r.err, "model.layers.1.mlp.up_proj.weight")) << r.err;
    EXPECT_TRUE(contains(r.err, "missing")) << r.err;
    EXPECT_FALSE(fs::exists(d + "_ckpt"));
  }
  // Wrong shape.
  {
    std::vector<NamedTensor> bad;
    for (const NamedTensor& t : tensors)
      bad.push_back(t.name == "model.norm.weight" ? NamedTensor{t.name, Tensor::zeros(Shape{17}, DType::kF32)} : t);
    const std::string d = hf_variant(hf, "wrong_shape", bad);
    const CmdResult r = import_hf({d, d + "_ckpt"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_TRUE(contains(r.err, "model.norm.weight")) << r.err;
    EXPECT_TRUE(contains(r.err, "[17]")) << r.err;
  }
  // Untied without lm_head.weight: missing.
  {
    std::vector<NamedTensor> fewer;
    for (const NamedTensor& t : tensors)
      if (t.name != "lm_head.weight") fewer.push_back(t);
    const std::string d = hf_variant(hf, "no_lm_head", fewer);
    const CmdResult r = import_hf({d, d + "_ckpt"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_TRUE(contains(r.err, "lm_head.weight")) << r.err;
  }
  // An unexpected tensor.
  {
    std::vector<NamedTensor> more = tensors;
    more.push_back({"model.layers.0.self_attn.q_proj.bias", Tensor::zeros(Shape{16}, DType::kF32)});
    const std::string d = hf_variant(hf, "extra_tensor", more);
    const CmdResult r = import_hf({d, d + "_ckpt"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_TRUE(contains(r.err, "q_proj.bias")) << r.err;
  }
}

// --with-modeling-code: the embedded modeling file and the auto_map entry that
// points transformers at it; the warning names trust_remote_code. (What the
// file computes is checked by tests/trainer/hf/hf_parity.py eabf, and with real
// transformers by tests/gpu/transformers_parity.py.)
TEST(HfExport, WithModelingCode) {
  const std::string hf = scratch() + "/modeling";
  const CmdResult r = export_hf({untied_checkpoint(), hf, "--dtype", "f32", "--with-modeling-code"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "trust_remote_code=True")) << r.err;
  const json config = read_json(hf + "/config.json");
  EXPECT_EQ(config["auto_map"]["AutoModelForCausalLM"], "modeling_rotor_llama.RotorLlamaForCausalLM");
  EXPECT_TRUE(config.contains("rotor_logit_scale"));
  std::ifstream in(hf + "/modeling_rotor_llama.py");
  const std::string code((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(code, "class RotorLlamaForCausalLM(LlamaForCausalLM):")) << code.substr(0, 200);
  EXPECT_TRUE(contains(code, "register_forward_hook"));
  // Plain export: neither the file nor auto_map.
  const std::string plain = scratch() + "/no_modeling";
  ASSERT_EQ(export_hf({untied_checkpoint(), plain}).rc, 0);
  EXPECT_FALSE(fs::exists(plain + "/modeling_rotor_llama.py"));
  EXPECT_FALSE(read_json(plain + "/config.json").contains("auto_map"));
}

// --dtype f16: F16 tensors holding the rounding of the f32 weights, torch_dtype
// float16, and an import that reads them back to those values.
TEST(HfExport, F16IsTheRoundingOfF32) {
  const std::string hf = scratch() + "/f16", ck = scratch() + "/f16_ckpt";
  ASSERT_EQ(export_hf({untied_checkpoint(), hf, "--dtype", "f16"}).rc, 0);
  EXPECT_EQ(read_json(hf + "/config.json")["torch_dtype"], "float16");
  auto f = SafetensorsFile::open(hf + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  auto orig = SafetensorsFile::open(untied_checkpoint() + "/model.safetensors");
  ASSERT_TRUE(orig.ok()) << orig.status();
  ASSERT_EQ(import_hf({hf, ck}).rc, 0);
  auto back = SafetensorsFile::open(ck + "/model.safetensors");
  ASSERT_TRUE(back.ok()) << back.status();
  for (const SafetensorsEntry& e : orig->entries()) {
    EXPECT_EQ(f->find(e.name)->dtype, "F16") << e.name;
    Tensor w = Tensor::empty(Shape(e.shape), DType::kF32), r = Tensor::empty(Shape(e.shape), DType::kF32);
    ASSERT_TRUE(orig->read_into(e.name, w).ok());
    ASSERT_TRUE(back->read_into(e.name, r).ok());
    double diff = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      const float want = half_to_float(float_to_half(w.data<float>()[i]));
      EXPECT_EQ(r.data<float>()[i], want) << e.name << " " << i;
      diff = std::max(diff, std::abs(r.item(i) - w.item(i)));
    }
    EXPECT_LE(diff, 1e-3) << e.name;  // init 0.02 scale: f16 keeps 11 significant bits
  }
}

TEST(HfExport, UsageErrors) {
  CmdResult r = export_hf({});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "usage: rotor export-hf")) << r.err;
  r = export_hf({untied_checkpoint(), scratch() + "/x", "--dtype", "f8"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--dtype")) << r.err;
  r = export_hf({untied_checkpoint(), scratch() + "/x", "--with-modeling-code=yes"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--with-modeling-code takes no value")) << r.err;
  r = export_hf({"/nonexistent/rotor-run", scratch() + "/x"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "/nonexistent/rotor-run")) << r.err;
  r = import_hf({scratch() + "/only-one"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "usage: rotor import-hf")) << r.err;
  EXPECT_EQ(export_hf({"--help"}).rc, 0);
}

TEST(HfExport, ShardSizes) {
  EXPECT_EQ(*parse_shard_size("5GB"), 5000000000ULL);
  EXPECT_EQ(*parse_shard_size("500MB"), 500000000ULL);
  EXPECT_EQ(*parse_shard_size("100KB"), 100000ULL);
  EXPECT_EQ(*parse_shard_size("100kb"), 100000ULL);
  EXPECT_EQ(*parse_shard_size("2GiB"), 2ULL << 30);
  EXPECT_EQ(*parse_shard_size("123"), 123ULL);
  EXPECT_FALSE(parse_shard_size("").ok());
  EXPECT_FALSE(parse_shard_size("GB").ok());
  EXPECT_FALSE(parse_shard_size("5XB").ok());
  EXPECT_FALSE(parse_shard_size("0MB").ok());
}

}  // namespace
}  // namespace rotor
