// recipes/paper/: every recipe loads and validates without its checkpoint or
// data (validation does not open files), each reproduces the settings its
// header cites, and the length ablation lists through `rotor sweep`.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "trainer/recipe/recipe.h"
#include "trainer/cli/sweep_command.h"
#include "tests/common/testing.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

fs::path paper_dir() {
  return rotor::testing::source_root() / "recipes/paper";
}

LoadedRecipe load_or_fail(const fs::path& path) {
  absl::StatusOr<LoadedRecipe> r = load_recipe(path.string(), {});
  EXPECT_TRUE(r.ok()) << path << ": " << r.status();
  return r.ok() ? *r : LoadedRecipe{};
}

// The recipe without the keys a method changes, as YAML.
std::string without_method(recipe::Recipe r) {
  r.clear_rope();
  r.clear_logit_scale();
  r.mutable_run()->clear_dir();
  return recipe_to_yaml(r);
}

TEST(PaperRecipesTest, EveryRecipeLoadsAndExpands) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(paper_dir()))
    if (e.path().extension() == ".yaml") files.push_back(e.path());
  ASSERT_GE(files.size(), 8u) << paper_dir();
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    const LoadedRecipe r = load_or_fail(f);
    EXPECT_FALSE(r.proto.model().init_from().empty()) << "paper runs start from a pretrained checkpoint";
    EXPECT_EQ(r.proto.device(), recipe::Recipe::cuda);
    EXPECT_EQ(r.model.num_attention_heads % r.proto.parallel().tp(), 0);
    EXPECT_GT(r.proto.parallel().tp() * r.proto.parallel().cp(), 1) << "a GPU-cluster layout";
    EXPECT_GE(r.proto.eval().lengths_size(), 4);
    absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(r);
    EXPECT_TRUE(runs.ok()) << runs.status();
  }
}

// Zhong et al.: one recipe per method, at 32K from Llama-2-7B, differing only
// in RoPE and the logit scalar.
TEST(PaperRecipesTest, ZhongMethods) {
  const LoadedRecipe base = load_or_fail(paper_dir() / "zhong_base.yaml");
  EXPECT_EQ(base.proto.model().init_from(), "checkpoints/llama-2-7b");
  EXPECT_EQ(base.model.hidden_size, 4096);
  EXPECT_EQ(base.model.num_hidden_layers, 32);
  EXPECT_EQ(base.proto.data().sequence_length(), 32768);
  const std::set<int64_t> lengths(base.proto.eval().lengths().begin(), base.proto.eval().lengths().end());
  EXPECT_TRUE(lengths.count(4096) && lengths.count(32768));
  EXPECT_GT(*lengths.rbegin(), 32768) << "the grid goes past the training length";
  EXPECT_EQ(base.proto.data().sequence_length() % (2 * base.proto.parallel().cp()), 0);
  const std::string common = without_method(base.proto);
  for (const std::string name : {"direct", "pi", "yarn", "ntk", "abf", "eabf"}) {
    SCOPED_TRACE(name);
    const LoadedRecipe r = load_or_fail(paper_dir() / ("zhong_" + name + ".yaml"));
    EXPECT_EQ(without_method(r.proto), common);
    EXPECT_EQ(r.proto.run().dir(), "runs/paper/zhong/" + name);
    EXPECT_EQ(r.logit_scale.kind == LogitScaleKind::kLogPosition, name == "eabf");
  }
  const LoadedRecipe pi = load_or_fail(paper_dir() / "zhong_pi.yaml");
  EXPECT_EQ(pi.rope.method, RopeMethod::kLinear);
  EXPECT_EQ(pi.rope.factor, 8.0);
  const LoadedRecipe yarn = load_or_fail(paper_dir() / "zhong_yarn.yaml");
  EXPECT_EQ(yarn.rope.method, RopeMethod::kYarn);
  EXPECT_EQ(yarn.rope.factor, 8.0);
  EXPECT_EQ(yarn.rope.original_max_position, 4096);
  const LoadedRecipe ntk = load_or_fail(paper_dir() / "zhong_ntk.yaml");
  EXPECT_EQ(ntk.rope.method, RopeMethod::kNone);
  EXPECT_EQ(ntk.rope.theta, 1e6);
  EXPECT_EQ(load_or_fail(paper_dir() / "zhong_abf.yaml").rope.theta, 500000.0);
  const LoadedRecipe eabf = load_or_fail(paper_dir() / "zhong_eabf.yaml");
  EXPECT_EQ(eabf.rope.theta, 500000.0);
  EXPECT_EQ(eabf.logit_scale.base_length, 4096);
  EXPECT_EQ(eabf.logit_scale.skip_layers, (std::vector<int64_t>{0, 1}));
}

// Zhang et al.: entropy-aware ABF at 16K, the paper's 6 steps of 32 at lr 2e-5.
// ProLong's two stages (arXiv 2410.02660): 64K at theta 8e6, lr 1e-5, 5000 x
// 4M tokens; then 512K at theta 1.28e8, lr 5e-6, 2500 x 8M, on cp 8.
TEST(PaperRecipesTest, ProlongStages) {
  const LoadedRecipe r = load_or_fail(paper_dir() / "prolong_llama3_8b.yaml");
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.proto.train().steps(), 7500);
  const LoadedStage& a = r.stages[0];
  const LoadedStage& b = r.stages[1];
  EXPECT_EQ(a.recipe.rope.theta, 8e6);
  EXPECT_EQ(b.recipe.rope.theta, 1.28e8);
  EXPECT_EQ(a.steps * a.recipe.proto.train().global_batch_tokens(), 5000LL * 4194304);
  EXPECT_EQ(b.steps * b.recipe.proto.train().global_batch_tokens(), 2500LL * 8388608);
  EXPECT_EQ(a.recipe.proto.data().sequence_length(), 65536);
  EXPECT_EQ(b.recipe.proto.data().sequence_length(), 524288);
  EXPECT_EQ(a.recipe.proto.train().lr(), 1e-5);
  EXPECT_EQ(b.recipe.proto.train().lr(), 5e-6);
  EXPECT_EQ(b.recipe.proto.parallel().cp(), 8);
  EXPECT_EQ(b.first_step, 5001);
}

TEST(PaperRecipesTest, ZhangEntropyAwareAbf) {
  const LoadedRecipe r = load_or_fail(paper_dir() / "zhang_eabf.yaml");
  EXPECT_EQ(r.proto.data().sequence_length(), 16384);
  EXPECT_EQ(r.rope.method, RopeMethod::kNone);
  EXPECT_EQ(r.rope.theta, 500000.0);
  EXPECT_EQ(r.logit_scale.kind, LogitScaleKind::kLogPosition);
  EXPECT_EQ(r.logit_scale.base_length, 4096);
  EXPECT_EQ(r.logit_scale.skip_layers, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(r.proto.train().steps(), 6);
  EXPECT_EQ(r.proto.train().global_batch_size(), 32);
  EXPECT_FALSE(r.proto.train().has_global_batch_tokens());
  EXPECT_DOUBLE_EQ(r.proto.train().lr(), 2e-5);
}

// The length ablation lists 4 runs through `rotor sweep`, and every run
// trains on the same number of tokens.
TEST(PaperRecipesTest, LengthAblationSweepListing) {
  const fs::path path = paper_dir() / "zhong_length_ablation.yaml";
  std::ostringstream out, err;
  ASSERT_EQ(run_sweep_command({path.string()}, out, err), 0) << err.str();
  std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << out.str();
  const std::vector<std::string> lengths = {"4096", "8192", "16384", "32768"};
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_NE(lines[i].find("data.sequence_length=" + lengths[i]), std::string::npos) << lines[i];
    EXPECT_NE(lines[i].find("runs/paper/zhong/length_ablation/"), std::string::npos) << lines[i];
  }
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(load_or_fail(path));
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 4u);
  std::set<int64_t> budgets;
  for (const NamedRun& run : *runs) {
    const recipe::TrainSection& t = run.recipe.proto.train();
    ASSERT_TRUE(t.has_global_batch_tokens()) << run.name;
    budgets.insert(t.steps() * t.global_batch_tokens());
    EXPECT_EQ(run.recipe.rope.theta, 1e6) << run.name;
  }
  EXPECT_EQ(budgets.size(), 1u) << "the same token budget at every length";
}

}  // namespace
}  // namespace rotor
