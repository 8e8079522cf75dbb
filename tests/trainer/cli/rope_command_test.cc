// Tests for `rotor rope`: recipes and --set loaded through load_recipe
// (RecipeMode::kRope) into RopeSettings, the JSON it prints, and its error
// messages (each must name the key at fault, and where it was given).
#include "trainer/cli/rope_command.h"
#include "trainer/recipe/rope_settings.h"
#include "tests/common/testing.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rotor {
namespace {

using Overrides = std::vector<std::string>;

const Overrides kEabf = {"model.head_dim=128", "rope.theta=500000", "logit_scale.kind=log_position",
                         "logit_scale.base_length=4096", "logit_scale.skip_layers=[0,1]"};

// This test's recipe file (tests run in parallel, each in its own process).
std::string recipe_path() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return (std::filesystem::path(::testing::TempDir()) /
          (std::string("rope_command_test_") + info->name() + ".yaml"))
      .string();
}

// load_rope_settings of `recipe` (written to recipe_path(); none when empty)
// and `overrides`.
absl::StatusOr<RopeSettings> load(const Overrides& overrides, const std::string& recipe) {
  if (recipe.empty()) return load_rope_settings("", overrides);
  std::ofstream(recipe_path()) << recipe;
  return load_rope_settings(recipe_path(), overrides);
}

RopeSettings parse_or_fail(const Overrides& overrides, const std::string& recipe = "") {
  absl::StatusOr<RopeSettings> s = load(overrides, recipe);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : RopeSettings{};
}

// The error message, or "" if loading succeeded.
std::string parse_error(const Overrides& overrides, const std::string& recipe = "") {
  absl::StatusOr<RopeSettings> s = load(overrides, recipe);
  if (s.ok()) return "";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  return std::string(s.status().message());
}

// "FILE:LINE:COL: " of recipe_path().
std::string at(int line, int col) {
  return recipe_path() + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
}

struct RunResult {
  int status;
  std::string out, err;
};

RunResult run(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int status = run_rope_command(args, out, err);
  return {status, out.str(), err.str()};
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::filesystem::path path = std::filesystem::path(::testing::TempDir()) / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(RopeCommand, OverridesFillSettingsAndDefaults) {
  const RopeSettings s = parse_or_fail(kEabf);
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.rope.method, RopeMethod::kNone);
  EXPECT_EQ(s.rope.theta, 500000);
  EXPECT_EQ(s.logit_scale.kind, LogitScaleKind::kLogPosition);
  EXPECT_EQ(s.logit_scale.base_length, 4096);
  EXPECT_EQ(s.logit_scale.skip_layers, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(default_rope_layers(s.logit_scale), 3);
  EXPECT_EQ(default_rope_layers(LogitScaleConfig{}), 1);

  const RopeSettings d = parse_or_fail({"model.head_dim=64"});
  EXPECT_EQ(d.rope.theta, 10000);
  EXPECT_EQ(d.rope.method, RopeMethod::kNone);

  // Every key is accepted with a value of its type; later overrides win.
  const RopeSettings y = parse_or_fail(
      {"model.head_dim=8", "rope.method=yarn", "rope.factor=2", "rope.factor=4.5",
       "rope.original_max_position=4096", "rope.beta_fast=16", "rope.beta_slow=2",
       "rope.truncate=false", "rope.attention_factor=1.5", "rope.sequence_length=100",
       "rope.low_freq_factor=2", "rope.high_freq_factor=8", "logit_scale.kind=constant",
       "logit_scale.value=1.25", "logit_scale.min=0.5", " logit_scale.skip_layers = [3]"});
  EXPECT_EQ(y.rope.method, RopeMethod::kYarn);
  EXPECT_EQ(y.rope.factor, 4.5);
  EXPECT_EQ(y.rope.original_max_position, 4096);
  EXPECT_EQ(y.rope.beta_fast, 16);
  EXPECT_EQ(y.rope.beta_slow, 2);
  EXPECT_FALSE(y.rope.truncate);
  EXPECT_EQ(y.rope.attention_factor, 1.5);
  EXPECT_EQ(y.rope.sequence_length, 100);
  EXPECT_EQ(y.rope.low_freq_factor, 2);
  EXPECT_EQ(y.rope.high_freq_factor, 8);
  EXPECT_EQ(y.logit_scale.kind, LogitScaleKind::kConstant);
  EXPECT_EQ(y.logit_scale.value, 1.25);
  EXPECT_EQ(y.logit_scale.min, 0.5);
  EXPECT_EQ(y.logit_scale.skip_layers, (std::vector<int64_t>{3}));
  // null unsets the attention factor again.
  EXPECT_FALSE(
      parse_or_fail({"model.head_dim=8", "rope.method=yarn", "rope.factor=2",
                     "rope.original_max_position=64", "rope.attention_factor=1.5",
                     "rope.attention_factor=null"})
          .rope.attention_factor.has_value());

  const RopeSettings l =
      parse_or_fail({"model.head_dim=4", "rope.method=longrope", "rope.original_max_position=4096",
                     "rope.short_factor=[1, 1.5]", "rope.long_factor=[2,4]"});
  EXPECT_EQ(l.rope.short_factor, (std::vector<double>{1, 1.5}));
  EXPECT_EQ(l.rope.long_factor, (std::vector<double>{2, 4}));
  // Integers are decimal (yaml-cpp's own conversion would read 010 as octal 8).
  EXPECT_EQ(parse_or_fail({"model.head_dim=010"}).head_dim, 10);
}

TEST(RopeCommand, JsonForEntropyAwareAbf) {
  const RopeSettings s = parse_or_fail(kEabf);
  absl::StatusOr<nlohmann::json> j = rope_json(s, {4095, 8191, 32767}, 3);
  ASSERT_TRUE(j.ok()) << j.status();
  absl::StatusOr<RopeTables> tables = compute_rope(s.rope, s.head_dim);
  ASSERT_TRUE(tables.ok());
  ASSERT_EQ((*j)["inv_freq"].size(), 64u);
  for (size_t i = 0; i < 64; ++i) {
    // Exact: the JSON double is the float widened, and narrows back to it.
    EXPECT_EQ(static_cast<float>((*j)["inv_freq"][i].get<double>()), tables->inv_freq[i]) << i;
  }
  EXPECT_EQ((*j)["attention_factor"].get<double>(), 1.0);
  EXPECT_EQ((*j)["logit_scale"]["positions"], nlohmann::json({4095, 8191, 32767}));
  const nlohmann::json& layers = (*j)["logit_scale"]["layers"];
  ASSERT_EQ(layers.size(), 3u);
  for (int l : {0, 1})
    EXPECT_EQ(layers[l], nlohmann::json({1.0, 1.0, 1.0})) << "skipped layer " << l;
  EXPECT_EQ(layers[2][0].get<double>(), 1.0);
  EXPECT_NEAR(layers[2][1].get<double>(), 13.0 / 12.0, 1e-12);
  EXPECT_NEAR(layers[2][2].get<double>(), 1.25, 1e-12);

  // Text round trip keeps every float bit-identical.
  const nlohmann::json back = nlohmann::json::parse(j->dump(2));
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(static_cast<float>(back["inv_freq"][i].get<double>()), tables->inv_freq[i]) << i;
  }
}

TEST(RopeCommand, JsonYarnAttentionFactorAndBadQuery) {
  const RopeSettings s = parse_or_fail({"model.head_dim=128", "rope.method=yarn", "rope.factor=16",
                                        "rope.original_max_position=4096"});
  absl::StatusOr<nlohmann::json> j = rope_json(s, default_rope_positions(), 1);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_NEAR((*j)["attention_factor"].get<double>(), 0.1 * std::log(16.0) + 1, 1e-6);
  EXPECT_EQ((*j)["logit_scale"]["positions"].size(), 9u);
  EXPECT_FALSE(rope_json(s, {-1}, 1).ok());
  EXPECT_FALSE(rope_json(s, {0}, 0).ok());
}

TEST(RopeCommand, ErrorsNameTheKey) {
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.facter=2"}),
            "--set rope.facter: unknown key 'rope.facter' (did you mean 'rope.factor'?)");
  EXPECT_NE(parse_error({"model.head_dim=128", "zzz.q=2"})
                .find("unknown key 'zzz.q'; known keys: model, rope, logit_scale, data"),
            std::string::npos);
  EXPECT_NE(parse_error({"rope.theta=500000"}).find("model.head_dim is required"),
            std::string::npos);
  EXPECT_NE(parse_error({}).find("model.head_dim is required"), std::string::npos);
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.factor=0.5"}),
            "--set rope.factor: rope.factor must be >= 1, got 0.5");
  EXPECT_EQ(parse_error({"model.head_dim=63"}),
            "--set model.head_dim: model.head_dim must be even, got 63");
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.method=linear"}),
            "--set rope.method: rope.factor is required for rope.method=linear");
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.factor=abc"}),
            "--set rope.factor: rope.factor: expected a number, got 'abc'");
  EXPECT_EQ(parse_error({"model.head_dim=128.5"}),
            "--set model.head_dim: model.head_dim: expected an integer, got '128.5'");
  // An empty value unsets the key, as `key: null` in a recipe does.
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.method=linear", "rope.factor=2", "rope.factor="}),
            "--set rope.factor: rope.factor is required for rope.method=linear");
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.factor=.nan"}),
            "--set rope.factor: rope.factor: expected a number, got '.nan'");
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.truncate=maybe"}),
            "--set rope.truncate: rope.truncate: expected true or false, got 'maybe'");
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.method=ntk2"}),
            "--set rope.method: unknown rope.method 'ntk2'; accepted: none, linear, ntk, dynamic, "
            "yarn, llama3, longrope");
  // Bad lists: unparsable, wrong element, not a list.
  const std::string unclosed = parse_error({"model.head_dim=128", "logit_scale.skip_layers=[0,1"});
  EXPECT_EQ(unclosed.rfind("--set logit_scale.skip_layers: logit_scale.skip_layers: cannot parse "
                           "'[0,1' as a YAML value",
                           0),
            0u)
      << unclosed;
  EXPECT_EQ(parse_error({"model.head_dim=128", "logit_scale.skip_layers=[0,x]"}),
            "--set logit_scale.skip_layers: logit_scale.skip_layers[1]: expected an integer, got 'x'");
  EXPECT_EQ(parse_error({"model.head_dim=128", "logit_scale.skip_layers=1"}),
            "--set logit_scale.skip_layers: logit_scale.skip_layers: expected a list such as "
            "[a, b], got '1'");
  EXPECT_EQ(parse_error({"model.head_dim=128", "rope.factor=[1,2]"}),
            "--set rope.factor: rope.factor: expected a number, got [1, 2]");
  EXPECT_EQ(parse_error({"model.head_dim=128", "logit_scale.skip_layers=[-1]"}),
            "--set logit_scale.skip_layers: logit_scale.skip_layers must be >= 0, got -1");
  EXPECT_EQ(parse_error({"model.head_dim"}), "--set expects KEY=VALUE, got 'model.head_dim'");
  EXPECT_EQ(parse_error({"=3"}), "--set expects KEY=VALUE, got '=3'");
  EXPECT_NE(
      parse_error({"model.head_dim=128", "rope.method=yarn", "rope.factor=4"})
          .find("rope.original_max_position"),
      std::string::npos);
  EXPECT_NE(
      parse_error({"model.head_dim=128", "rope.attention_factor=2"}).find("rope.attention_factor"),
      std::string::npos);
}

TEST(RopeCommand, RecipeFileWithOverrides) {
  const std::string recipe =
      "# entropy-aware ABF\n"
      "model:\n"
      "  head_dim: 128\n"
      "rope:\n"
      "  method: none\n"
      "  theta: 500000.0\n"
      "logit_scale:\n"
      "  kind: log_position\n"
      "  base_length: 4096\n"
      "  skip_layers:\n"
      "    - 0\n"
      "    - 1\n";
  const RopeSettings s = parse_or_fail({}, recipe);
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.rope.theta, 500000);
  EXPECT_EQ(s.logit_scale.skip_layers, (std::vector<int64_t>{0, 1}));
  const RopeSettings o =
      parse_or_fail({"rope.theta=1000000", "logit_scale.skip_layers=[]"}, recipe);
  EXPECT_EQ(o.rope.theta, 1000000);
  EXPECT_TRUE(o.logit_scale.skip_layers.empty());

  const std::string path = write_temp("rope_command_test_recipe.yaml", recipe);
  absl::StatusOr<RopeSettings> loaded =
      load_rope_settings(path, {"rope.method=linear", "rope.factor=2"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->rope.method, RopeMethod::kLinear);
  EXPECT_EQ(loaded->rope.theta, 500000);
  absl::StatusOr<RopeSettings> missing = load_rope_settings(path + ".missing", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(path + ".missing"), std::string::npos);
  // Empty sections and an empty recipe are fine.
  EXPECT_EQ(parse_or_fail({"model.head_dim=4"}, "rope:\n").head_dim, 4);
  EXPECT_EQ(parse_or_fail({"model.head_dim=4"}, "# nothing\n").head_dim, 4);
}

TEST(RopeCommand, RecipeErrorsHaveFileAndLine) {
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: 128\nrope:\n  facter: 2\n"),
            at(4, 3) + "unknown key 'rope.facter' (did you mean 'rope.factor'?)");
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: 128\nrope:\n  factor: abc\n"),
            at(4, 11) + "rope.factor: expected a number, got 'abc'");
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: 128\ntrian:\n  steps: 2\n"),
            at(3, 1) + "unknown key 'trian' (did you mean 'train'?)");
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: 128\n  head_dim: 64\n"),
            at(3, 3) + "duplicate key 'model.head_dim'");
  EXPECT_EQ(parse_error({}, "model: 128\n"),
            at(1, 8) + "model: expected a mapping (section), got '128'");
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: [1, 2\n").rfind(recipe_path() + ":", 0), 0u);
  EXPECT_EQ(parse_error({}, "- 1\n- 2\n").rfind(at(1, 1) + "a recipe is a mapping of sections", 0),
            0u);
  // Range errors found after merging name the key and where it was given.
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: 127\n"),
            at(2, 13) + "model.head_dim must be even, got 127");
  // Values of sections rotor rope does not read are still checked.
  EXPECT_EQ(parse_error({}, "model:\n  head_dim: 128\ntrain:\n  steps: 0\n"),
            at(4, 10) + "train.steps must be >= 1, got 0");
}

// A training recipe (every section, base: inheritance) works as it is: the
// head size comes from hidden_size / num_attention_heads.
TEST(RopeCommand, TrainingRecipesLoad) {
  const std::filesystem::path demo = rotor::testing::source_root() / "recipes/demo";
  absl::StatusOr<RopeSettings> eabf = load_rope_settings((demo / "eabf.yaml").string(), {});
  ASSERT_TRUE(eabf.ok()) << eabf.status();
  EXPECT_GT(eabf->head_dim, 0);
  EXPECT_EQ(eabf->rope.theta, 500000.0);
  EXPECT_EQ(eabf->logit_scale.kind, LogitScaleKind::kLogPosition);
  const RopeSettings s = parse_or_fail(
      {"train.steps=3"},
      "model: {vocab_size: 260, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,\n"
      "        num_attention_heads: 4}\n"
      "rope: {method: linear, factor: 2}\n"
      "data: {datasets: [{path: nowhere}], sequence_length: 32}\n");
  EXPECT_EQ(s.head_dim, 16);
  EXPECT_EQ(s.rope.method, RopeMethod::kLinear);
  EXPECT_EQ(parse_error({}, "model: {hidden_size: 64, num_attention_heads: 3}\n"),
            at(1, 47) + "model.hidden_size (64) must be a multiple of model.num_attention_heads (3) "
                        "when model.head_dim is not given");
}

// A staged recipe: --stage NAME picks a stage's RoPE (with --set
// stages.NAME.KEY too); without it, status 2 and the stages listed.
TEST(RopeCommand, StageOfAStagedRecipe) {
  const std::string path = write_temp("rope_command_staged.yaml",
                                      "model: {head_dim: 8}\nrope: {theta: 10000}\nstages:\n"
                                      "  - {name: short, steps: 2}\n"
                                      "  - {name: long, steps: 2, set: {rope.method: linear, rope.factor: 4}}\n");
  RunResult r = run({path, "--stage", "long"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["inv_freq"][0].get<double>(), 0.25);
  r = run({path, "--stage=short"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["inv_freq"][0].get<double>(), 1.0);
  r = run({path, "--stage", "long", "--set", "stages.long.rope.factor=2"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["inv_freq"][0].get<double>(), 0.5);
  r = run({path});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "rotor rope: " + path + " has stages (short, long), each with its own RoPE: name one with "
                   "--stage NAME\n");
  r = run({path, "--stage", "middle"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "rotor rope: no stage 'middle' (stages: short, long)\n");
}

TEST(RopeCommand, RunPrintsJsonOrFailsWithStatus2) {
  RunResult r = run({"--set", "model.head_dim=128", "--set=rope.theta=500000", "--set",
                     "logit_scale.kind=log_position", "--set", "logit_scale.skip_layers=[0,1]",
                     "--positions", "4095,8191,32767"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["logit_scale"]["layers"].size(), 3u);  // default: max(skip_layers) + 2
  EXPECT_NEAR(j["logit_scale"]["layers"][2][2].get<double>(), 1.25, 1e-12);

  r = run({"--set", "model.head_dim=16", "--layers=2"});
  ASSERT_EQ(r.status, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["logit_scale"]["positions"],
            nlohmann::json({0, 1023, 2047, 4095, 8191, 16383, 32767, 65535, 131071}));
  EXPECT_EQ(j["logit_scale"]["layers"].size(), 2u);
  EXPECT_EQ(j["inv_freq"].size(), 8u);

  const std::string path = write_temp("rope_command_run_recipe.yaml", "model:\n  head_dim: 8\n");
  r = run({path, "--set", "rope.method=linear", "--set", "rope.factor=4"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["inv_freq"][0].get<double>(), 0.25);

  r = run({"--set", "model.head_dim=128", "--set", "rope.facter=2"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "rotor rope: --set rope.facter: unknown key 'rope.facter' (did you mean "
            "'rope.factor'?)\n");
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--set"},
                                              {"--bogus"},
                                              {"a.yaml", "b.yaml"},
                                              {"--positions", "1,,2"},
                                              {"--positions=-1"},
                                              {"--layers", "0"},
                                              {"--set", "model.head_dim=8", "--layers", "x"}}) {
    r = run(bad);
    EXPECT_EQ(r.status, 2) << bad[0];
    EXPECT_EQ(r.err.rfind("rotor rope: ", 0), 0u) << r.err;
  }
  r = run({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("usage: rotor rope"), std::string::npos);
  EXPECT_NE(r.out.find("logit_scale.skip_layers"), std::string::npos);
}

}  // namespace
}  // namespace rotor
