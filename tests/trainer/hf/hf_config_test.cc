#include "trainer/hf/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace rotor {
namespace {

using json = nlohmann::json;

// meta-llama/Llama-2-7b-hf config.json as published.
const char* kLlama2 = R"({
  "_name_or_path": "meta-llama/Llama-2-7b-hf",
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

// meta-llama/Llama-3.1-8B config.json as published.
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// A small Llama: head_dim 16 (8 pairs).
json small(const json& rope_scaling = nullptr) {
  json j = {{"model_type", "llama"},
            {"architectures", {"LlamaForCausalLM"}},
            {"vocab_size", 256},
            {"hidden_size", 64},
            {"intermediate_size", 128},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"max_position_embeddings", 16384},
            {"rope_theta", 10000.0}};
  if (!rope_scaling.is_null()) j["rope_scaling"] = rope_scaling;
  return j;
}

HfModel parse_ok(const json& j) {
  absl::StatusOr<HfModel> m = parse_hf_config(j, "test/config.json");
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : HfModel{};
}

std::string parse_error(const json& j) {
  absl::StatusOr<HfModel> m = parse_hf_config(j, "test/config.json");
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : std::string(m.status().message());
}

void expect_same(const HfModel& a, const HfModel& b) {
  const LlamaConfig &x = a.config, &y = b.config;
  EXPECT_EQ(x.vocab_size, y.vocab_size);
  EXPECT_EQ(x.hidden_size, y.hidden_size);
  EXPECT_EQ(x.intermediate_size, y.intermediate_size);
  EXPECT_EQ(x.num_hidden_layers, y.num_hidden_layers);
  EXPECT_EQ(x.num_attention_heads, y.num_attention_heads);
  EXPECT_EQ(x.num_key_value_heads, y.num_key_value_heads);
  EXPECT_EQ(x.resolved_head_dim(), y.resolved_head_dim());
  EXPECT_EQ(x.rms_norm_eps, y.rms_norm_eps);
  EXPECT_EQ(x.rope_theta, y.rope_theta);
  EXPECT_EQ(x.max_position_embeddings, y.max_position_embeddings);
  EXPECT_EQ(x.tie_word_embeddings, y.tie_word_embeddings);
  EXPECT_EQ(x.initializer_range, y.initializer_range);
  const RopeConfig &r = a.rope, &s = b.rope;
  EXPECT_EQ(r.method, s.method);
  EXPECT_EQ(r.theta, s.theta);
  EXPECT_EQ(r.factor, s.factor);
  EXPECT_EQ(r.original_max_position, s.original_max_position);
  EXPECT_EQ(r.beta_fast, s.beta_fast);
  EXPECT_EQ(r.beta_slow, s.beta_slow);
  EXPECT_EQ(r.truncate, s.truncate);
  EXPECT_EQ(r.low_freq_factor, s.low_freq_factor);
  EXPECT_EQ(r.high_freq_factor, s.high_freq_factor);
  EXPECT_EQ(r.short_factor, s.short_factor);
  EXPECT_EQ(r.long_factor, s.long_factor);
  EXPECT_EQ(r.attention_factor, s.attention_factor);
  EXPECT_EQ(r.sequence_length, s.sequence_length);
  const LogitScaleConfig &p = a.logit_scale, &q = b.logit_scale;
  EXPECT_EQ(p.kind, q.kind);
  EXPECT_EQ(p.value, q.value);
  EXPECT_EQ(p.base_length, q.base_length);
  EXPECT_EQ(p.skip_layers, q.skip_layers);
  EXPECT_EQ(p.min, q.min);
  // Same tables at a short and a long current length.
  for (int64_t seq : {int64_t{0}, int64_t{100000}}) {
    RopeConfig ra = r, rb = s;
    ra.sequence_length = rb.sequence_length = seq;
    auto ta = compute_rope(ra, x.resolved_head_dim());
    auto tb = compute_rope(rb, y.resolved_head_dim());
    ASSERT_TRUE(ta.ok()) << ta.status();
    ASSERT_TRUE(tb.ok()) << tb.status();
    EXPECT_EQ(ta->inv_freq, tb->inv_freq);
    EXPECT_EQ(ta->attention_factor, tb->attention_factor);
  }
}

HfModel round_trip(const HfModel& m) {
  absl::StatusOr<json> j = make_hf_config(m, "bfloat16");
  EXPECT_TRUE(j.ok()) << j.status();
  if (!j.ok()) return HfModel{};
  // Through text, as a file would go.
  return parse_ok(json::parse(j->dump(2)));
}

TEST(HfConfig, Llama2Published) {
  HfModel m = parse_ok(json::parse(kLlama2));
  EXPECT_EQ(m.config.vocab_size, 32000);
  EXPECT_EQ(m.config.hidden_size, 4096);
  EXPECT_EQ(m.config.intermediate_size, 11008);
  EXPECT_EQ(m.config.num_key_value_heads, 32);
  EXPECT_EQ(m.config.resolved_head_dim(), 128);
  EXPECT_EQ(m.config.head_dim, 0);
  EXPECT_EQ(m.config.rms_norm_eps, 1e-5);
  EXPECT_EQ(m.config.rope_theta, 10000.0);
  EXPECT_EQ(m.config.max_position_embeddings, 4096);
  EXPECT_EQ(m.rope.method, RopeMethod::kNone);
  EXPECT_EQ(m.rope.theta, 10000.0);
  EXPECT_EQ(m.logit_scale.kind, LogitScaleKind::kNone);
}

TEST(HfConfig, Llama31Published) {
  HfModel m = parse_ok(json::parse(kLlama31));
  EXPECT_EQ(m.config.vocab_size, 128256);
  EXPECT_EQ(m.config.num_key_value_heads, 8);
  EXPECT_EQ(m.config.intermediate_size, 14336);
  EXPECT_EQ(m.config.max_position_embeddings, 131072);
  EXPECT_EQ(m.config.rope_theta, 500000.0);
  EXPECT_EQ(m.rope.method, RopeMethod::kLlama3);
  EXPECT_EQ(m.rope.theta, 500000.0);
  EXPECT_EQ(m.rope.factor, 8.0);
  EXPECT_EQ(m.rope.low_freq_factor, 1.0);
  EXPECT_EQ(m.rope.high_freq_factor, 4.0);
  EXPECT_EQ(m.rope.original_max_position, 8192);
}

// make_hf_config(parse_hf_config(published)) keeps every published value it writes.
TEST(HfConfig, ExportKeepsPublishedValues) {
  for (const char* text : {kLlama2, kLlama31}) {
    const json published = json::parse(text);
    HfModel m = parse_ok(published);
    absl::StatusOr<json> out = make_hf_config(m, "bfloat16");
    ASSERT_TRUE(out.ok()) << out.status();
    const std::vector<std::string> not_carried = {"_name_or_path", "bos_token_id", "eos_token_id",
                                                  "pretraining_tp", "transformers_version",
                                                  "use_cache", "attention_dropout", "torch_dtype"};
    for (auto it = published.begin(); it != published.end(); ++it) {
      if (std::find(not_carried.begin(), not_carried.end(), it.key()) != not_carried.end()) continue;
      if (it.value().is_null()) {
        EXPECT_FALSE(out->contains(it.key())) << it.key();
        continue;
      }
      ASSERT_TRUE(out->contains(it.key())) << it.key();
      EXPECT_EQ((*out)[it.key()], it.value()) << it.key();
    }
    EXPECT_EQ((*out)["torch_dtype"], "bfloat16");
    EXPECT_EQ((*out)["head_dim"], 128);
    EXPECT_EQ((*out)["rope_parameters"]["rope_theta"], published.value("rope_theta", 10000.0));
    expect_same(m, parse_ok(*out));
  }
}

TEST(HfConfig, Yarn) {
  json j = small({{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 4096}});
  HfModel m = parse_ok(j);
  EXPECT_EQ(m.rope.method, RopeMethod::kYarn);
  EXPECT_EQ(m.rope.factor, 4.0);
  EXPECT_EQ(m.rope.original_max_position, 4096);
  EXPECT_EQ(m.rope.beta_fast, 32.0);
  EXPECT_EQ(m.rope.beta_slow, 1.0);
  EXPECT_TRUE(m.rope.truncate);
  EXPECT_FALSE(m.rope.attention_factor);
  auto t = compute_rope(m.rope, 16);
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ(t->attention_factor, 0.1 * std::log(4.0) + 1.0);

  // Without original_max_position_embeddings: L = max_position_embeddings.
  m = parse_ok(small({{"rope_type", "yarn"}, {"factor", 4.0}}));
  EXPECT_EQ(m.rope.original_max_position, 16384);

  // mscale / mscale_all_dim become HF's attention factor.
  m = parse_ok(small({{"rope_type", "yarn"}, {"factor", 4.0}, {"mscale", 0.707}, {"mscale_all_dim", 1.0}}));
  ASSERT_TRUE(m.rope.attention_factor);
  EXPECT_DOUBLE_EQ(*m.rope.attention_factor,
                   (0.1 * 0.707 * std::log(4.0) + 1.0) / (0.1 * std::log(4.0) + 1.0));
  // Only one of them: HF ignores it.
  m = parse_ok(small({{"rope_type", "yarn"}, {"factor", 4.0}, {"mscale", 0.707}}));
  EXPECT_FALSE(m.rope.attention_factor);
  // An explicit attention_factor wins.
  m = parse_ok(small({{"rope_type", "yarn"}, {"factor", 4.0}, {"attention_factor", 1.5},
                      {"mscale", 0.707}, {"mscale_all_dim", 1.0}}));
  EXPECT_EQ(m.rope.attention_factor, 1.5);
  EXPECT_NE(parse_error(small({{"rope_type", "yarn"}, {"factor", 4.0}, {"mscale", "big"},
                               {"mscale_all_dim", 1.0}}))
                .find("rope_scaling.mscale must be a number"),
            std::string::npos);
}

TEST(HfConfig, LinearDynamicLegacyType) {
  HfModel m = parse_ok(small({{"type", "linear"}, {"factor", 2.0}}));
  EXPECT_EQ(m.rope.method, RopeMethod::kLinear);
  EXPECT_EQ(m.rope.factor, 2.0);
  m = parse_ok(small({{"type", "dynamic"}, {"factor", 2.0}}));
  EXPECT_EQ(m.rope.method, RopeMethod::kDynamic);
  EXPECT_EQ(m.rope.original_max_position, 16384);
  m = parse_ok(small({{"rope_type", "dynamic"}, {"factor", 2.0},
                      {"original_max_position_embeddings", 16384}}));
  EXPECT_EQ(m.rope.original_max_position, 16384);
  EXPECT_NE(parse_error(small({{"rope_type", "dynamic"}, {"factor", 2.0},
                               {"original_max_position_embeddings", 4096}}))
                .find("rope_scaling.original_max_position_embeddings"),
            std::string::npos);
}

TEST(HfConfig, LongRope) {
  const std::vector<double> short_f = {1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7};
  const std::vector<double> long_f = {1, 2, 3, 4, 5, 6, 7, 8};
  // Phi3 style: top-level original; factor = max_position_embeddings / original.
  json j = small({{"rope_type", "longrope"}, {"short_factor", short_f}, {"long_factor", long_f}});
  j["original_max_position_embeddings"] = 4096;
  HfModel m = parse_ok(j);
  EXPECT_EQ(m.rope.method, RopeMethod::kLongRope);
  EXPECT_EQ(m.rope.original_max_position, 4096);
  EXPECT_EQ(m.rope.factor, 4.0);
  EXPECT_EQ(m.rope.short_factor, short_f);
  EXPECT_EQ(m.rope.long_factor, long_f);
  auto t = compute_rope(m.rope, 16);
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ(t->attention_factor, std::sqrt(1 + std::log(4.0) / std::log(4096.0)));
  // No original: the explicit factor, L = max_position_embeddings.
  m = parse_ok(small({{"rope_type", "longrope"}, {"short_factor", short_f},
                      {"long_factor", long_f}, {"factor", 2.0}}));
  EXPECT_EQ(m.rope.factor, 2.0);
  EXPECT_EQ(m.rope.original_max_position, 16384);
  // Wrong length of the factor lists.
  EXPECT_NE(parse_error(small({{"rope_type", "longrope"}, {"short_factor", {1.0, 1.0}},
                               {"long_factor", long_f}, {"factor", 2.0}}))
                .find("rope.short_factor"),
            std::string::npos);
}

TEST(HfConfig, Transformers5RopeParameters) {
  json j = small();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1000000.0}, {"factor", 4.0},
                          {"original_max_position_embeddings", 4096}};
  HfModel m = parse_ok(j);
  EXPECT_EQ(m.rope.method, RopeMethod::kYarn);
  EXPECT_EQ(m.rope.theta, 1000000.0);
  EXPECT_EQ(m.config.rope_theta, 1000000.0);
  EXPECT_EQ(m.rope.original_max_position, 4096);
  // Default type.
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  m = parse_ok(j);
  EXPECT_EQ(m.rope.method, RopeMethod::kNone);
  EXPECT_EQ(m.rope.theta, 500000.0);
  // Per layer type, all the same: accepted.
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"rope_theta", 1e4}, {"factor", 2.0}}},
                          {"sliding_attention", {{"rope_type", "linear"}, {"rope_theta", 1e4}, {"factor", 2.0}}}};
  m = parse_ok(j);
  EXPECT_EQ(m.rope.method, RopeMethod::kLinear);
  // Different per layer type: refused.
  j["rope_parameters"]["sliding_attention"]["factor"] = 4.0;
  EXPECT_NE(parse_error(j).find("rope_parameters is per layer type"), std::string::npos);
  // rope_theta disagreeing with rope_parameters.rope_theta.
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  j["rope_theta"] = 10000.0;
  EXPECT_NE(parse_error(j).find("rope_theta (10000) differs"), std::string::npos);
  // rope_scaling and rope_parameters disagreeing.
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  EXPECT_NE(parse_error(j).find("rope_scaling (linear) and rope_parameters (none)"), std::string::npos);
}

TEST(HfConfig, Refusals) {
  auto expect_error = [](json j, const std::string& needle) {
    const std::string e = parse_error(j);
    EXPECT_NE(e.find(needle), std::string::npos) << e;
    EXPECT_EQ(e.rfind("test/config.json: ", 0), 0u) << e;
  };
  json j = small();
  j["model_type"] = "mistral";
  expect_error(j, "model_type must be \"llama\"");
  j = small();
  j["architectures"] = {"MistralForCausalLM"};
  expect_error(j, "architectures must be [\"LlamaForCausalLM\"]");
  j = small();
  j.erase("model_type");
  j.erase("architectures");
  expect_error(j, "model_type is missing");
  expect_error(small({{"rope_type", "su"}, {"factor", 2.0}}), "rope_scaling.rope_type 'su' is not supported");
  expect_error(small({{"rope_type", "ntk"}, {"factor", 2.0}}), "rope_scaling.rope_type 'ntk'");
  expect_error(small({{"factor", 2.0}}), "rope_scaling.rope_type is missing");
  expect_error(small({{"rope_type", "linear"}}), "rope_scaling.factor is required");
  expect_error(small({{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                      {"high_freq_factor", 4.0}}),
               "rope_scaling.original_max_position_embeddings is required");
  j = small();
  j["attention_bias"] = true;
  expect_error(j, "attention_bias must be false");
  j = small();
  j["mlp_bias"] = true;
  expect_error(j, "mlp_bias must be false");
  j = small();
  j["hidden_act"] = "gelu";
  expect_error(j, "hidden_act must be \"silu\"");
  j = small();
  j["head_dim"] = 15;
  expect_error(j, "head_dim must be a positive even integer");
  j = small();
  j["hidden_size"] = 66;
  expect_error(j, "head_dim is absent");
  j = small();
  j["partial_rotary_factor"] = 0.5;
  expect_error(j, "partial_rotary_factor must be 1");
  j = small();
  j["num_attention_heads"] = 4;
  j["num_key_value_heads"] = 3;
  expect_error(j, "num_key_value_heads");
  j = small();
  j["vocab_size"] = "big";
  expect_error(j, "vocab_size must be an integer");
  expect_error(json::array(), "must be a JSON object");
}

TEST(HfConfig, Defaults) {
  HfModel m = parse_ok(json{{"model_type", "llama"}});
  EXPECT_EQ(m.config.vocab_size, 32000);
  EXPECT_EQ(m.config.hidden_size, 4096);
  EXPECT_EQ(m.config.intermediate_size, 11008);
  EXPECT_EQ(m.config.num_hidden_layers, 32);
  EXPECT_EQ(m.config.num_attention_heads, 32);
  EXPECT_EQ(m.config.num_key_value_heads, 32);
  EXPECT_EQ(m.config.resolved_head_dim(), 128);
  EXPECT_EQ(m.config.max_position_embeddings, 2048);
  EXPECT_EQ(m.config.rms_norm_eps, 1e-6);
  EXPECT_EQ(m.config.rope_theta, 10000.0);
  EXPECT_FALSE(m.config.tie_word_embeddings);
  EXPECT_EQ(m.rope.method, RopeMethod::kNone);
  // An explicit head_dim other than hidden/heads is kept.
  m = parse_ok(json{{"model_type", "llama"}, {"hidden_size", 2048}, {"num_attention_heads", 32},
                    {"head_dim", 128}});
  EXPECT_EQ(m.config.head_dim, 128);
}

HfModel base_model() {
  HfModel m;
  m.config.vocab_size = 256;
  m.config.hidden_size = 64;
  m.config.intermediate_size = 128;
  m.config.num_hidden_layers = 2;
  m.config.num_attention_heads = 4;
  m.config.num_key_value_heads = 2;
  m.config.max_position_embeddings = 16384;
  m.config.rms_norm_eps = 1e-5;
  m.config.rope_theta = 500000.0;
  m.config.tie_word_embeddings = true;
  m.rope.theta = 500000.0;
  return m;
}

TEST(HfConfig, RoundTripEveryMethod) {
  std::vector<HfModel> models;
  HfModel m = base_model();
  models.push_back(m);  // none
  m.rope.method = RopeMethod::kLinear;
  m.rope.factor = 4.0;
  models.push_back(m);
  m.rope.method = RopeMethod::kNtk;
  m.rope.factor = 8.0;
  models.push_back(m);
  m.rope.method = RopeMethod::kDynamic;
  m.rope.factor = 2.0;
  m.rope.original_max_position = 16384;
  models.push_back(m);
  m.rope = RopeConfig{};
  m.rope.theta = 500000.0;
  m.rope.method = RopeMethod::kYarn;
  m.rope.factor = 4.0;
  m.rope.original_max_position = 4096;  // 16384 / 4096 = 4: the original is written
  models.push_back(m);
  m.rope.original_max_position = 16384;  // == max_position_embeddings: not written
  m.rope.factor = 8.0;
  m.rope.beta_fast = 16.0;
  m.rope.beta_slow = 2.0;
  m.rope.truncate = false;
  m.rope.attention_factor = 1.25;
  models.push_back(m);
  m.rope = RopeConfig{};
  m.rope.theta = 500000.0;
  m.rope.method = RopeMethod::kLlama3;
  m.rope.factor = 8.0;
  m.rope.low_freq_factor = 1.0;
  m.rope.high_freq_factor = 4.0;
  m.rope.original_max_position = 8192;
  models.push_back(m);
  m.rope = RopeConfig{};
  m.rope.theta = 500000.0;
  m.rope.method = RopeMethod::kLongRope;
  m.rope.short_factor = {1, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6};
  m.rope.long_factor = {1, 2, 3, 4, 5, 6, 7, 8};
  m.rope.factor = 4.0;
  m.rope.original_max_position = 4096;
  models.push_back(m);
  m.rope.factor = 2.0;
  m.rope.original_max_position = 16384;
  m.rope.attention_factor = 1.1;
  models.push_back(m);
  // Logit scalars.
  m = base_model();
  m.logit_scale.kind = LogitScaleKind::kLogPosition;
  m.logit_scale.base_length = 4096;
  m.logit_scale.skip_layers = {0, 1};
  m.logit_scale.min = 1.0;
  models.push_back(m);
  m.logit_scale = LogitScaleConfig{};
  m.logit_scale.kind = LogitScaleKind::kConstant;
  m.logit_scale.value = 1.3;
  models.push_back(m);

  for (const HfModel& model : models) {
    SCOPED_TRACE(rope_method_name(model.rope.method));
    expect_same(model, round_trip(model));
  }
}

TEST(HfConfig, ExportForms) {
  HfModel m = base_model();
  m.rope.method = RopeMethod::kNtk;
  m.rope.factor = 8.0;
  absl::StatusOr<json> j = make_hf_config(m, "float32");
  ASSERT_TRUE(j.ok()) << j.status();
  const double scaled = 500000.0 * std::pow(8.0, 16.0 / 14.0);
  EXPECT_EQ((*j)["rope_theta"], scaled);
  EXPECT_FALSE(j->contains("rope_scaling"));
  EXPECT_EQ((*j)["rope_parameters"], (json{{"rope_type", "default"}, {"rope_theta", scaled}}));
  EXPECT_EQ((*j)["torch_dtype"], "float32");
  // What HF computes from it (plain RoPE at the scaled base) is rotor's ntk.
  RopeConfig plain;
  plain.theta = scaled;
  EXPECT_EQ(compute_rope(plain, 16)->inv_freq, compute_rope(m.rope, 16)->inv_freq);
  // Editing rope_theta without rotor_rope is caught.
  (*j)["rope_theta"] = 1e6;
  (*j)["rope_parameters"]["rope_theta"] = 1e6;
  EXPECT_NE(parse_error(*j).find("rotor_rope"), std::string::npos);

  m = base_model();
  m.rope.method = RopeMethod::kLlama3;
  m.rope.factor = 8.0;
  m.rope.original_max_position = 8192;
  j = make_hf_config(m, "bfloat16");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["rope_scaling"], (json{{"rope_type", "llama3"}, {"factor", 8.0},
                                         {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                         {"original_max_position_embeddings", 8192}}));
  EXPECT_EQ((*j)["rope_parameters"]["rope_theta"], 500000.0);
  EXPECT_EQ((*j)["rope_parameters"]["rope_type"], "llama3");
  EXPECT_FALSE(j->contains("rotor_logit_scale"));
}

TEST(HfConfig, ExportRefusals) {
  auto expect_error = [](const HfModel& m, const std::string& needle) {
    absl::StatusOr<json> j = make_hf_config(m, "bfloat16");
    ASSERT_FALSE(j.ok());
    EXPECT_NE(j.status().message().find(needle), std::string::npos) << j.status();
  };
  HfModel m = base_model();
  m.rope.method = RopeMethod::kDynamic;
  m.rope.factor = 2.0;
  m.rope.original_max_position = 4096;
  expect_error(m, "rope.method dynamic needs rope.original_max_position");
  m.rope.method = RopeMethod::kYarn;
  m.rope.factor = 2.0;  // 16384 / 4096 = 4 != 2
  expect_error(m, "max_position_embeddings = rope.factor * rope.original_max_position");
  m = base_model();
  m.rope.theta = 10000.0;
  expect_error(m, "rope.theta (10000) differs");
  m = base_model();
  EXPECT_NE(make_hf_config(m, "float8").status().message().find("dtype"), std::string::npos);
}

}  // namespace
}  // namespace rotor
