// Staged recipes (`stages:`, trainer/recipe/recipe.h): each stage is the
// recipe's keys plus its own set, validated as a recipe of its own; the
// errors of a bad stage name the file, line, column, the stage and the key;
// stage keys take --set and sweep; the YAML round trip keeps the stages.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "trainer/recipe/recipe.h"
#include "trainer/recipe/rope_settings.h"
#include "tests/common/testing.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using Overrides = std::vector<std::string>;

// Lines 1-12; the stages start at line 13.
constexpr const char* kHead = R"(model:
  vocab_size: 260
  hidden_size: 64
  intermediate_size: 176
  num_hidden_layers: 2
  num_attention_heads: 4
data:
  datasets: [{path: data/a}]
  sequence_length: 128
train: {global_batch_size: 8, lr: 1.0e-3, warmup_steps: 2, min_lr: 1.0e-4}
parallel: {cp: 2}
rope: {theta: 10000}
)";

constexpr const char* kStages = R"(stages:
  - {name: short, steps: 6, set: {data.sequence_length: 128}}
  - name: long
    steps: 4
    set:
      data.sequence_length: 256
      rope.theta: 100000
      train: {lr: 5.0e-4}
)";

class StagesRecipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("stages_recipe_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& text, const std::string& name = "r.yaml") {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string error_of(const std::string& text, const Overrides& overrides = {}) {
    absl::StatusOr<LoadedRecipe> r = load_recipe(write(text), overrides);
    return r.ok() ? "" : std::string(r.status().message());
  }
  std::string loc(int line, int col) const {
    return (dir_ / "r.yaml").string() + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
  }
  fs::path dir_;
};

TEST_F(StagesRecipeTest, EachStageIsTheRecipeWithItsOwnSet) {
  absl::StatusOr<LoadedRecipe> r = load_recipe(write(std::string(kHead) + kStages), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->proto.train().steps(), 10) << "the sum of the stages' steps";
  ASSERT_EQ(r->stages.size(), 2u);
  const LoadedStage& a = r->stages[0];
  const LoadedStage& b = r->stages[1];
  EXPECT_EQ(a.name, "short");
  EXPECT_EQ(a.first_step, 1);
  EXPECT_EQ(a.last_step(), 6);
  EXPECT_EQ(b.first_step, 7);
  EXPECT_EQ(b.last_step(), 10);
  EXPECT_EQ(a.recipe.proto.train().steps(), 6) << "each schedule runs over its stage's steps";
  EXPECT_EQ(b.recipe.proto.train().steps(), 4);
  EXPECT_EQ(a.recipe.proto.data().sequence_length(), 128);
  EXPECT_EQ(b.recipe.proto.data().sequence_length(), 256);
  EXPECT_EQ(a.recipe.rope.theta, 10000.0);
  EXPECT_EQ(b.recipe.rope.theta, 100000.0);
  EXPECT_EQ(b.recipe.model.rope_theta, 100000.0);
  EXPECT_EQ(a.recipe.proto.train().lr(), 1e-3);
  EXPECT_EQ(b.recipe.proto.train().lr(), 5e-4) << "a section mapping works like dotted keys";
  EXPECT_EQ(b.recipe.proto.train().min_lr(), 1e-4) << "the recipe's keys the stage does not set";
  EXPECT_EQ(b.recipe.proto.stages_size(), 0);
  EXPECT_EQ(training_stages(*r).size(), 2u);
  // Without stages: one stage named "" that is the recipe itself.
  absl::StatusOr<LoadedRecipe> one = load_recipe(write(std::string(kHead), "p.yaml"), {"train.steps=5"});
  ASSERT_TRUE(one.ok()) << one.status();
  const std::vector<LoadedStage> single = training_stages(*one);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].name, "");
  EXPECT_EQ(single[0].last_step(), 5);
}

TEST_F(StagesRecipeTest, RoundTripKeepsTheStages) {
  absl::StatusOr<LoadedRecipe> r = load_recipe(write(std::string(kHead) + kStages), {});
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string yaml = recipe_to_yaml(r->proto);
  EXPECT_NE(yaml.find("stages:"), std::string::npos) << yaml;
  absl::StatusOr<LoadedRecipe> again = load_recipe(write(yaml, "again.yaml"), {});
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
  EXPECT_EQ(recipe_to_yaml(again->proto), yaml);
  ASSERT_EQ(again->stages.size(), 2u);
  EXPECT_EQ(recipe_to_yaml(again->stages[1].recipe.proto), recipe_to_yaml(r->stages[1].recipe.proto));
}

TEST_F(StagesRecipeTest, StageKeysTakeSetAndSweep) {
  const std::string path = write(std::string(kHead) + kStages);
  absl::StatusOr<LoadedRecipe> r =
      load_recipe(path, {"stages.long.rope.theta=400000", "stages.short.steps=3", "stages.short.data.document_masking=true"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stages[1].recipe.rope.theta, 400000.0);
  EXPECT_EQ(r->stages[0].steps, 3);
  EXPECT_EQ(r->stages[1].first_step, 4);
  EXPECT_EQ(r->proto.train().steps(), 7);
  EXPECT_TRUE(r->stages[0].recipe.proto.data().document_masking());
  EXPECT_FALSE(r->stages[1].recipe.proto.data().document_masking());
  // A --set of a key a stage sets would not reach it.
  absl::StatusOr<LoadedRecipe> shadowed = load_recipe(path, {"rope.theta=20000"});
  ASSERT_FALSE(shadowed.ok());
  EXPECT_EQ(shadowed.status().message(),
            "--set rope.theta: --set rope.theta: stage long sets rope.theta, which would override it there; "
            "--set stages.long.rope.theta instead");
  absl::StatusOr<LoadedRecipe> unknown = load_recipe(path, {"stages.medium.rope.theta=1"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("no stage named 'medium' (stages: short, long)"), std::string::npos)
      << unknown.status();
  // A sweep of a stage's key: one staged run per value (the training-length ablation).
  const std::string swept = write(std::string(kHead) + kStages +
                                      "sweep: {stages.long.data.sequence_length: [256, 512]}\n",
                                  "sweep.yaml");
  absl::StatusOr<LoadedRecipe> s = load_recipe(swept, {});
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(*s);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[1].recipe.stages[1].recipe.proto.data().sequence_length(), 512);
  EXPECT_EQ((*runs)[1].recipe.stages[0].recipe.proto.data().sequence_length(), 128);
  EXPECT_EQ((*runs)[1].name, "sweep-stages.long.data.sequence_length=512");
  const std::string bad_sweep = write(std::string(kHead) + kStages + "sweep: {rope.theta: [1, 2]}\n", "bad.yaml");
  absl::StatusOr<LoadedRecipe> b = load_recipe(bad_sweep, {});
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<std::vector<NamedRun>> bad_runs = expand_sweep(*b);
  ASSERT_FALSE(bad_runs.ok());
  EXPECT_NE(bad_runs.status().message().find("sweep rope.theta: stage long sets rope.theta"), std::string::npos)
      << bad_runs.status();
}

TEST_F(StagesRecipeTest, RopeTakesTheStage) {
  const std::string path = write(std::string(kHead) + kStages);
  absl::StatusOr<RopeSettings> long_stage = load_rope_settings(path, {}, "long");
  ASSERT_TRUE(long_stage.ok()) << long_stage.status();
  EXPECT_EQ(long_stage->rope.theta, 100000.0);
  absl::StatusOr<RopeSettings> none = load_rope_settings(path, {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("has stages (short, long), each with its own RoPE: name one with --stage"),
            std::string::npos)
      << none.status();
  absl::StatusOr<RopeSettings> wrong = load_rope_settings(path, {}, "longer");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().message(), "no stage 'longer' (stages: short, long)");
}

// recipes/demo/progressive.yaml: abf.yaml's 150 steps split into 75 at 256
// and 75 at 512, the same 4096 tokens per step and RoPE in both.
TEST_F(StagesRecipeTest, DemoProgressiveRecipe) {
  const fs::path demo = rotor::testing::source_root() / "recipes/demo";
  absl::StatusOr<LoadedRecipe> abf = load_recipe((demo / "abf.yaml").string(), {});
  absl::StatusOr<LoadedRecipe> r = load_recipe((demo / "progressive.yaml").string(), {});
  ASSERT_TRUE(abf.ok() && r.ok()) << r.status();
  ASSERT_EQ(r->stages.size(), 2u);
  EXPECT_EQ(r->proto.train().steps(), abf->proto.train().steps());
  for (const LoadedStage& s : r->stages) {
    const recipe::Recipe& p = s.recipe.proto;
    EXPECT_EQ(p.data().sequence_length() * p.train().global_batch_size(),
              abf->proto.data().sequence_length() * abf->proto.train().global_batch_size());
    EXPECT_EQ(s.recipe.rope.theta, abf->rope.theta);
  }
  EXPECT_EQ(r->stages[0].recipe.proto.data().sequence_length(), 256);
  EXPECT_EQ(r->stages[1].recipe.proto.data().sequence_length(), 512);
}

// Each bad stage: a recipe error naming the location, the stage and the key.
TEST_F(StagesRecipeTest, BadStagesNameTheStageAndTheKey) {
  const std::string head(kHead);
  struct Case {
    std::string stages, error;
  };
  const std::vector<Case> cases = {
      {"stages:\n  - {name: a, set: {rope.theta: 2}}\n", loc(14, 5) + "stage a: steps is required (its optimizer steps)"},
      {"stages:\n  - {name: a, steps: 0}\n", loc(14, 22) + "stage a: steps must be >= 1, got 0"},
      {"stages:\n  - {name: a, steps: 2, set: {rope.thetta: 2}}\n",
       loc(14, 44) + "stage a: unknown key 'rope.thetta' (did you mean 'rope.theta'?)"},
      {"stages:\n  - {name: a, steps: 2, set: {train.lr: fast}}\n",
       loc(14, 41) + "stage a: train.lr: expected a number, got 'fast'"},
      {"stages:\n  - {name: a, steps: 2, set: {model.hidden_size: 128}}\n",
       loc(14, 50) + "stage a: model.hidden_size cannot be set by a stage: the model is the run's (its sizes and "
                     "weights carry over from stage to stage)"},
      {"stages:\n  - {name: a, steps: 2, set: {train.seed: 3}}\n",
       loc(14, 43) + "stage a: train.seed cannot be set by a stage: train.seed fixes the data order that the stages "
                     "share"},
      {"stages:\n  - {name: a, steps: 2}\n  - {name: a, steps: 2}\n", loc(15, 12) + "stages: two stages are named 'a'"},
      {"stages:\n  - {name: a, steps: 2, sett: {}}\n",
       loc(14, 25) + "stages[0]: unknown key 'sett' (a stage has name, steps and set)"},
      // Impossible combinations surface as the stage's own validation errors.
      {"stages:\n  - {name: a, steps: 2, set: {data.sequence_length: 130}}\n",
       loc(14, 53) + "stage a: data.sequence_length (130) must be a multiple of 2 * parallel.cp (4)"},
      {"stages:\n  - {name: a, steps: 2, set: {data.pose_target_length: 64}}\n",
       loc(14, 56) + "stage a: data.pose_target_length (64) must be >= data.sequence_length (128): PoSE spreads a "
                     "sample's positions over the longer target"},
      {"stages:\n  - {name: a, steps: 1}\n",
       loc(10, 57) + "stage a: train.warmup_steps (2) must be <= train.steps (1)"},
      {"stages:\n  - {name: a, steps: 2, set: {parallel.tp: 3}}\n",
       loc(14, 44) + "stage a: parallel.tp (3) must divide model.num_attention_heads (4)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.stages);
    EXPECT_EQ(error_of(head + c.stages), c.error);
  }
  // train.steps, when given, must be the stages' sum.
  EXPECT_EQ(error_of(head + "stages:\n  - {name: a, steps: 2}\n", {"train.steps=3"}),
            "--set train.steps: train.steps (3) must equal the sum of the stages' steps (2), or be left out");
  // A dataset keeps its packing across stages.
  EXPECT_EQ(error_of(head + "stages:\n  - {name: a, steps: 2}\n  - {name: b, steps: 2, set: "
                            "{data.datasets: [{path: data/a, packing: whole}]}}\n"),
            loc(15, 46) + "stage b: data.datasets[0].packing of data/a (whole) differs from stage a's (concatenate): "
                          "a dataset keeps its packing across stages, so that its data continues");
}

}  // namespace
}  // namespace rotor
