// Tests for trainer/recipe: loading YAML recipes against recipe.proto, base:
// inheritance, --set overrides, validation messages (each must name the file,
// the line and the key), sweep expansion and the YAML round trip.
#include "trainer/recipe/recipe.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "tests/common/testing.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;
using Overrides = std::vector<std::string>;

// A small valid recipe; tests append or replace lines.
constexpr const char* kGood = R"(model:
  vocab_size: 260
  hidden_size: 64
  intermediate_size: 176
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
data:
  datasets:
    - {path: data/a, weight: 2}
    - {path: data/b}
  sequence_length: 256
train:
  steps: 100
  global_batch_tokens: 4096
  micro_batch_size: 4
  lr: 1.0e-3
  min_lr: 1.0e-4
  warmup_steps: 10
)";

class RecipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("recipe_test_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `text` to dir/name and returns the path.
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  // The error of loading `text` (as r.yaml) with `overrides`; "" when it loads.
  std::string error_of(const std::string& text, const Overrides& overrides = {}) {
    absl::StatusOr<LoadedRecipe> r = load_recipe(write("r.yaml", text), overrides);
    return r.ok() ? "" : std::string(r.status().message());
  }
  LoadedRecipe load_or_fail(const std::string& path, const Overrides& overrides = {}) {
    absl::StatusOr<LoadedRecipe> r = load_recipe(path, overrides);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : LoadedRecipe{};
  }
  std::string loc(int line, int col) const {
    return (dir_ / "r.yaml").string() + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
  }
  fs::path dir_;
};

TEST_F(RecipeTest, GoodRecipeLoadsWithDefaults) {
  const LoadedRecipe r = load_or_fail(write("good.yaml", kGood));
  EXPECT_EQ(r.model.vocab_size, 260);
  EXPECT_EQ(r.model.num_key_value_heads, 2);
  EXPECT_EQ(r.proto.model().head_dim(), 16);  // 64 / 4
  EXPECT_EQ(r.model.head_dim, 16);
  EXPECT_FALSE(r.given.model().has_head_dim());
  EXPECT_EQ(r.rope.method, RopeMethod::kNone);
  EXPECT_EQ(r.rope.theta, 10000.0);
  EXPECT_EQ(r.proto.data().datasets(1).weight(), 1.0);
  EXPECT_FALSE(r.proto.data().has_tokenizer()) << "no default: the recipe names none";
  EXPECT_TRUE(r.proto.parallel().sequence_parallel());
  EXPECT_EQ(r.proto.run().log_interval(), 1);
  EXPECT_EQ(r.proto.rope().method(), "none");
  EXPECT_EQ(r.proto.rope().theta(), 10000.0);
  EXPECT_EQ(r.proto.logit_scale().kind(), "none");
  EXPECT_EQ(r.proto.train().schedule(), recipe::TrainSection::cosine);
  EXPECT_EQ(r.proto.parallel().tp(), 1);
  EXPECT_EQ(r.proto.run().dir(), "runs/good");
  EXPECT_EQ(r.proto.device(), recipe::Recipe::cpu);
  EXPECT_EQ(r.where.at("train.lr"), (dir_ / "good.yaml").string() + ":17:7");
}

// Every recipe of recipes/demo loads and validates; the continued-pretraining
// ones start from the base run at 4x its length and differ from each other
// only in rope and logit_scale (and run.dir).
TEST_F(RecipeTest, DemoRecipesLoad) {
  const fs::path demo = rotor::testing::source_root() / "recipes/demo";
  const LoadedRecipe base = load_or_fail((demo / "base.yaml").string());
  EXPECT_EQ(base.proto.data().sequence_length(), 128);
  EXPECT_GE(base.model.vocab_size, 256);
  EXPECT_EQ(base.proto.data().tokenizer(), "spm:runs/demo/data/tokenizer.model");
  EXPECT_TRUE(base.model.validate().ok());
  EXPECT_EQ(base.proto.run().dir(), "runs/demo/base");
  EXPECT_FALSE(base.proto.model().has_init_from()) << "the base model trains from scratch";
  const std::map<std::string, RopeMethod> methods = {{"direct", RopeMethod::kNone},
                                                     {"pi", RopeMethod::kLinear},
                                                     {"yarn", RopeMethod::kYarn},
                                                     {"abf", RopeMethod::kNone},
                                                     {"eabf", RopeMethod::kNone}};
  for (const auto& [name, method] : methods) {
    SCOPED_TRACE(name);
    const LoadedRecipe r = load_or_fail((demo / (name + ".yaml")).string());
    EXPECT_EQ(r.proto.model().init_from(), "runs/demo/base");
    EXPECT_EQ(r.proto.data().sequence_length(), 4 * base.proto.data().sequence_length());
    EXPECT_EQ(r.proto.run().dir(), "runs/demo/" + name);
    EXPECT_EQ(r.rope.method, method);
    EXPECT_EQ(r.rope.theta, name == "abf" || name == "eabf" ? 500000.0 : 10000.0);
    EXPECT_EQ(r.logit_scale.kind == LogitScaleKind::kLogPosition, name == "eabf");
    recipe::Recipe common = r.proto;
    common.clear_rope();
    common.clear_logit_scale();
    common.mutable_run()->clear_dir();
    recipe::Recipe direct = load_or_fail((demo / "direct.yaml").string()).proto;
    direct.clear_rope();
    direct.clear_logit_scale();
    direct.mutable_run()->clear_dir();
    EXPECT_EQ(recipe_to_yaml(common), recipe_to_yaml(direct));
  }
  // Every training blend holds real text and answer-only retrieval documents:
  // one padded document per sample at the base length, packed beyond.
  for (const char* name : {"base", "direct", "abf-256"}) {
    SCOPED_TRACE(name);
    const recipe::DataSection data = load_or_fail((demo / (std::string(name) + ".yaml")).string()).proto.data();
    ASSERT_GE(data.datasets_size(), 2);
    EXPECT_EQ(data.datasets(0).path(), "runs/demo/data/sotu");
    EXPECT_EQ(data.datasets(1).path(), "runs/demo/data/retrieval-128");
    for (int i = 1; i < data.datasets_size(); ++i) {
      EXPECT_EQ(data.datasets(i).loss(), recipe::Dataset::last_sequence);
      EXPECT_EQ(data.datasets(i).packing() == recipe::Dataset::whole, std::string(name) == "base");
    }
  }
  // The length ablation: ABF at 2x instead of 4x, the same tokens per step,
  // otherwise abf.yaml.
  const LoadedRecipe abf = load_or_fail((demo / "abf.yaml").string());
  const LoadedRecipe abf256 = load_or_fail((demo / "abf-256.yaml").string());
  EXPECT_EQ(abf256.proto.data().sequence_length(), 2 * base.proto.data().sequence_length());
  EXPECT_EQ(abf256.proto.run().dir(), "runs/demo/abf-256");
  EXPECT_EQ(abf256.proto.train().global_batch_size() * abf256.proto.data().sequence_length(),
            abf.proto.train().global_batch_size() * abf.proto.data().sequence_length());
  auto without_length = [](recipe::Recipe r) {
    r.mutable_data()->clear_datasets();
    r.mutable_data()->clear_sequence_length();
    r.mutable_train()->clear_global_batch_size();
    r.mutable_train()->clear_micro_batch_size();
    r.mutable_run()->clear_dir();
    return recipe_to_yaml(r);
  };
  EXPECT_EQ(without_length(abf256.proto), without_length(abf.proto));
  absl::StatusOr<std::vector<NamedRun>> grid = expand_sweep(load_or_fail((demo / "ablation.yaml").string()));
  ASSERT_TRUE(grid.ok()) << grid.status();
  ASSERT_EQ(grid->size(), 6u);
  EXPECT_EQ((*grid)[0].name, "ablation-train.steps=75-rope.theta=10000");
  EXPECT_EQ((*grid)[5].recipe.proto.run().dir(),
            "runs/demo/ablation/ablation-train.steps=150-rope.theta=500000");
}

TEST_F(RecipeTest, RopeAndLogitScaleUseRotorRopeConversion) {
  const LoadedRecipe r = load_or_fail(write("r.yaml", std::string(kGood) + R"(rope:
  method: yarn
  factor: 4
  original_max_position: 64
  theta: 500000
logit_scale:
  kind: log_position
  base_length: 64
  skip_layers: [0, 1]
)"));
  EXPECT_EQ(r.rope.method, RopeMethod::kYarn);
  EXPECT_EQ(r.rope.factor, 4.0);
  EXPECT_EQ(r.model.rope_theta, 500000.0);
  EXPECT_EQ(r.logit_scale.kind, LogitScaleKind::kLogPosition);
  EXPECT_EQ(r.logit_scale.skip_layers, (std::vector<int64_t>{0, 1}));
}

// The corpus of bad recipes: each gives exactly this message (file:line:col: text).
TEST_F(RecipeTest, BadRecipesGiveExactMessages) {
  const std::string g = kGood;
  auto edit = [&g](const std::string& from, const std::string& to) {
    std::string t = g;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  struct Case {
    std::string text;
    int line, col;
    std::string message;
  };
  const std::vector<Case> cases = {
      {g + "  lrr: 1\n", 20, 3, "unknown key 'train.lrr' (did you mean 'train.lr'?)"},
      {g + "trian:\n  steps: 1\n", 20, 1, "unknown key 'trian' (did you mean 'train'?)"},
      {g + "  sedd: 1\n", 20, 3, "unknown key 'train.sedd' (did you mean 'train.seed'?)"},
      {g + "  zzzzzz: 1\n", 20, 3,
       "unknown key 'train.zzzzzz'; known keys of train: train.steps, train.global_batch_tokens, "
       "train.global_batch_size, train.micro_batch_size, train.lr, train.min_lr, "
       "train.warmup_steps, train.schedule, train.weight_decay, train.beta1, train.beta2, "
       "train.grad_clip, train.recompute, train.tile_tokens, train.offload_activations, train.seed"},
      {g + "  seed: ten\n", 20, 9, "train.seed: expected an integer, got 'ten'"},
      {g + "  recompute: maybe\n", 20, 14, "train.recompute: expected one of none, full, selective, got 'maybe'"},
      {g + "  tile_tokens: 0\n", 20, 16, "train.tile_tokens must be in [1, 16777216] (rows of one MLP tile), got 0"},
      {g + "  beta1: [1]\n", 20, 10, "train.beta1: expected a number, got [1]"},
      {g + "eval:\n  lengths: 1024\n", 21, 12, "eval.lengths: expected a list such as [a, b], got '1024'"},
      {g + "eval:\n  lengths: [1024, x]\n", 21, 19, "eval.lengths[1]: expected an integer, got 'x'"},
      {g + "parallel:\n  cp: 2\neval:\n  lengths: [512, 1030]\n", 23, 12,
       "eval.lengths[1] (1030) must be a multiple of 4, as data.sequence_length (parallel.cp and parallel.tp)"},
      {g + "run: runs/x\n", 20, 6, "run: expected a mapping (section), got 'runs/x'"},
      {g + "  schedule: cosin\n", 20, 13,
       "train.schedule: expected one of cosine, linear, constant, got 'cosin' (did you mean 'cosine'?)"},
      {g + "device: tpu\n", 20, 9, "device: expected one of cpu, cuda, sim, got 'tpu'"},
      {edit("{path: data/b}", "{path: data/b, loss: answer}"), 11, 28,
       "data.datasets[1].loss: expected one of all, last_sequence, got 'answer'"},
      {edit("{path: data/b}", "{path: data/b, packing: padded}"), 11, 31,
       "data.datasets[1].packing: expected one of concatenate, whole, got 'padded'"},
      {g + "  seed: 1\n  seed: 2\n", 21, 3, "duplicate key 'train.seed'"},
      {edit("steps: 100", "steps: 0"), 14, 10, "train.steps must be >= 1, got 0"},
      {g + "  beta2: 1\n", 20, 10, "train.beta2 must be in [0, 1)"},
      {g + "  steps: 5\n", 20, 3, "duplicate key 'train.steps'"},
      {g + "data:\n  heldout: x\n", 20, 1, "duplicate key 'data'"},
      {edit("warmup_steps: 10", "warmup_steps: 200"), 19, 17, "train.warmup_steps (200) must be <= train.steps (100)"},
      {edit("min_lr: 1.0e-4", "min_lr: 0.01"), 18, 11, "train.lr (0.001) must be >= train.min_lr (0.01)"},
      {g + "  global_batch_size: 16\n", 15, 24,
       "exactly one of train.global_batch_tokens and train.global_batch_size is required"},
      {edit("global_batch_tokens: 4096", "global_batch_tokens: 5000"), 15, 24,
       "train.global_batch_tokens (5000) must be a multiple of train.micro_batch_size * "
       "data.sequence_length (4 * 256)"},
      {g + "parallel:\n  tp: 3\n", 21, 7, "parallel.tp (3) must divide model.num_attention_heads (4)"},
      {g + "parallel:\n  cp: 4\n  ulysses: 3\n", 22, 12, "parallel.ulysses (3) must divide parallel.cp (4)"},
      {g + "parallel:\n  cp: 8\n  ulysses: 8\n", 22, 12,
       "parallel.ulysses (8) must divide the query heads of a tp rank: model.num_attention_heads (4) / "
       "parallel.tp (1) = 4"},
      {g + "parallel:\n  ulysses: 0\n", 21, 12, "parallel.ulysses must be >= 1, got 0"},
      {g + "parallel:\n  cp: 3\n", 21, 7,
       "data.sequence_length (256) must be a multiple of 2 * parallel.cp (6)"},
      {g + "parallel:\n  tp: 2\n  cp: 3\n", 22, 7,
       "data.sequence_length (256) must be a multiple of 2 * parallel.cp (6) times parallel.tp (2) "
       "with sequence parallelism"},
      {edit("sequence_length: 256", "sequence_length: 100"), 15, 24,
       "train.global_batch_tokens (4096) must be a multiple of train.micro_batch_size * "
       "data.sequence_length (4 * 100)"},
      {g + "rope:\n  method: yarn\n", 21, 11, "rope.factor is required for rope.method=yarn"},
      {g + "rope:\n  method: yran\n  factor: 2\n", 21, 11, "unknown rope.method 'yran'"},
      {g + "logit_scale:\n  kind: constant\n  value: -1\n", 22, 10, "logit_scale.value"},
      {edit("num_attention_heads: 4", "num_attention_heads: 3"), 6, 24,
       "model.hidden_size (64) must be a multiple of model.num_attention_heads (3) when "
       "model.head_dim is not given"},
      {edit("num_attention_heads: 4", "num_attention_heads: 4\n  head_dim: 15"), 7, 13,
       "model: head_dim must be even for RoPE, got 15"},
      {edit("num_key_value_heads: 2", "num_key_value_heads: 3"), 6, 24,
       "model: num_attention_heads (4) must be a multiple of num_key_value_heads (3)"},
      {edit("sequence_length: 256\n", "sequence_length: 256\n  tokenizer: gpt2\n"), 13, 14,
       "data.tokenizer: expected 'bytes' or 'spm:PATH', got 'gpt2'"},
  };
  for (const Case& c : cases) {
    const std::string err = error_of(c.text);
    EXPECT_TRUE(err.rfind(loc(c.line, c.col) + c.message, 0) == 0)
        << "recipe:\n" << c.text << "\nwant: " << loc(c.line, c.col) << c.message << "\ngot:  " << err;
  }
}

// The byte tokenizer's vocabulary check applies only to a recipe that says
// bytes: without data.tokenizer there is none, and the resolved recipe names none.
TEST_F(RecipeTest, ByteVocabularyOnlyWithTheByteTokenizer) {
  std::string small = kGood;
  small.replace(small.find("vocab_size: 260"), 15, "vocab_size: 101");
  const LoadedRecipe r = load_or_fail(write("r.yaml", small));
  EXPECT_EQ(r.model.vocab_size, 101);
  EXPECT_FALSE(r.proto.data().has_tokenizer());
  EXPECT_EQ(recipe_to_yaml(r.proto).find("tokenizer"), std::string::npos) << recipe_to_yaml(r.proto);
  EXPECT_EQ(error_of(small, {"data.tokenizer=bytes"}),
            loc(2, 15) + "model.vocab_size (101) must be >= 256 with data.tokenizer bytes");
  EXPECT_EQ(load_or_fail(write("spm.yaml", small), {"data.tokenizer=spm:x.model"}).proto.data().tokenizer(),
            "spm:x.model");
}

// A rotor rope recipe: only the head size is required, every value given is
// still checked, the keys and --set are the same.
TEST_F(RecipeTest, RopeModeNeedsOnlyTheHeadSize) {
  absl::StatusOr<LoadedRecipe> r =
      load_recipe(write("rope.yaml", "model: {head_dim: 8}\nrope: {method: linear, factor: 2}\n"),
                  {"logit_scale.kind=constant"}, RecipeMode::kRope);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->proto.model().head_dim(), 8);
  EXPECT_EQ(r->rope.method, RopeMethod::kLinear);
  EXPECT_EQ(r->logit_scale.kind, LogitScaleKind::kConstant);
  EXPECT_EQ(r->logit_scale.value, 1.0);  // the default of kind constant
  // The same file is not a training recipe.
  EXPECT_EQ(load_recipe((dir_ / "rope.yaml").string(), {}).status().message(),
            (dir_ / "rope.yaml").string() + ": model.vocab_size is required");
  absl::StatusOr<LoadedRecipe> none = load_recipe("", {"rope.theta=2"}, RecipeMode::kRope);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(),
            "model.head_dim is required (in the recipe's model section or --set model.head_dim=128)");
  EXPECT_EQ(load_recipe("", {"model.head_dim=8", "train.beta1=2"}, RecipeMode::kRope).status().message(),
            "--set train.beta1: train.beta1 must be in [0, 1)");
}

TEST_F(RecipeTest, InitFromNeedsNoSizes) {
  std::string text = kGood;
  text.replace(0, text.find("data:"), "model:\n  init_from: ckpt/step_1000\nrope:\n  theta: 500000\n");
  const LoadedRecipe r = load_or_fail(write("r.yaml", text));
  EXPECT_FALSE(r.head_dim_known);
  EXPECT_EQ(r.proto.model().init_from(), "ckpt/step_1000");
  EXPECT_EQ(r.rope.theta, 500000.0);
}

TEST_F(RecipeTest, ValidateNamesKeysWithoutLocations) {
  LoadedRecipe r = load_or_fail(write("r.yaml", kGood));
  EXPECT_TRUE(validate(r.proto).ok());
  r.proto.mutable_parallel()->set_tp(8);
  EXPECT_EQ(validate(r.proto).message(), "parallel.tp (8) must divide model.num_attention_heads (4)");
  r.proto.mutable_parallel()->set_tp(1);
  r.proto.mutable_rope()->set_method("yarn");
  EXPECT_EQ(validate(r.proto).message(), "rope.factor is required for rope.method=yarn");
}

TEST_F(RecipeTest, MissingKeysAndFiles) {
  EXPECT_EQ(error_of("model:\n  vocab_size: 260\n"),
            (dir_ / "r.yaml").string() + ": model.hidden_size is required");
  absl::StatusOr<LoadedRecipe> r = load_recipe((dir_ / "nope.yaml").string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "cannot read recipe '" + (dir_ / "nope.yaml").string() +
                                      "': No such file or directory");
}

TEST_F(RecipeTest, BaseInheritsAndOverrides) {
  write("parent.yaml", std::string(kGood) + "rope:\n  theta: 500000\n");
  fs::create_directories(dir_ / "sub");
  const std::string child = write("sub/child.yaml",
                                  "base: ../parent.yaml\ntrain:\n  lr: 2.0e-3\n"
                                  "  global_batch_tokens: null\n  global_batch_size: 8\n"
                                  "data:\n  datasets: [{path: data/c}]\n");
  const std::string grandchild = write("grandchild.yaml", "base: sub/child.yaml\ntrain:\n  steps: 50\n");
  const LoadedRecipe r = load_or_fail(grandchild);
  EXPECT_EQ(r.proto.train().lr(), 2e-3);                  // child
  EXPECT_EQ(r.proto.train().steps(), 50);                 // grandchild
  EXPECT_EQ(r.proto.train().min_lr(), 1e-4);              // parent
  EXPECT_FALSE(r.proto.train().has_global_batch_tokens());  // unset by null
  EXPECT_EQ(r.proto.train().global_batch_size(), 8);
  ASSERT_EQ(r.proto.data().datasets_size(), 1);  // lists replace
  EXPECT_EQ(r.proto.data().datasets(0).path(), "data/c");
  EXPECT_EQ(r.rope.theta, 500000.0);
  EXPECT_EQ(r.proto.run().dir(), "runs/grandchild");
  EXPECT_EQ(r.where.at("train.lr"), child + ":3:7");
}

TEST_F(RecipeTest, BaseCycleAndMissingBase) {
  write("a.yaml", "base: b.yaml\n");
  write("b.yaml", "base: a.yaml\n");
  absl::StatusOr<LoadedRecipe> r = load_recipe((dir_ / "a.yaml").string(), {});
  ASSERT_FALSE(r.ok());
  const std::string a = fs::weakly_canonical(dir_ / "a.yaml").string();
  const std::string b = fs::weakly_canonical(dir_ / "b.yaml").string();
  EXPECT_EQ(r.status().message(),
            (dir_ / "a.yaml").string() + ":1:7: base: " + (dir_ / "b.yaml").string() +
                ":1:7: base: inheritance cycle: " + a + " -> " + b + " -> " + a);
  const std::string err = error_of("base: missing.yaml\n");
  EXPECT_EQ(err, loc(1, 7) + "base: cannot read recipe '" + (dir_ / "missing.yaml").string() +
                     "': No such file or directory");
  // An error inside the base names the base's file and line.
  write("bad_base.yaml", "train:\n  stepz: 1\n");
  EXPECT_EQ(error_of("base: bad_base.yaml\n"),
            loc(1, 7) + "base: " + (dir_ / "bad_base.yaml").string() +
                ":2:3: unknown key 'train.stepz' (did you mean 'train.steps'?)");
}

TEST_F(RecipeTest, SetOverridesNestedKeysAndLists) {
  const std::string path = write("r.yaml", kGood);
  const LoadedRecipe r = load_or_fail(
      path, {"train.lr=5e-3", "eval.lengths=[512, 1024]", "data.datasets=[{path: x, weight: 3}]",
             "rope.method=linear", "rope.factor=2", "device=cuda", "train.schedule=linear"});
  EXPECT_EQ(r.proto.train().lr(), 5e-3);
  EXPECT_EQ(r.proto.eval().lengths_size(), 2);
  EXPECT_EQ(r.proto.eval().lengths(1), 1024);
  ASSERT_EQ(r.proto.data().datasets_size(), 1);
  EXPECT_EQ(r.proto.data().datasets(0).weight(), 3.0);
  EXPECT_EQ(r.rope.method, RopeMethod::kLinear);
  EXPECT_EQ(r.proto.device(), recipe::Recipe::cuda);
  EXPECT_EQ(r.where.at("train.lr"), "--set train.lr");

  auto err = [&](const Overrides& o) {
    absl::StatusOr<LoadedRecipe> l = load_recipe(path, o);
    return l.ok() ? std::string() : std::string(l.status().message());
  };
  EXPECT_EQ(err({"train.lrr=1"}), "--set train.lrr: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  EXPECT_EQ(err({"train.steps=abc"}), "--set train.steps: train.steps: expected an integer, got 'abc'");
  EXPECT_EQ(err({"train.lr.x=1"}), "--set train.lr.x: unknown key 'train.lr.x' ('train.lr' is not a section)");
  EXPECT_EQ(err({"train.lr"}), "--set expects KEY=VALUE, got 'train.lr'");
  EXPECT_EQ(err({"parallel.tp=3"}), "--set parallel.tp: parallel.tp (3) must divide model.num_attention_heads (4)");
}

TEST_F(RecipeTest, SweepExpandsTheGrid) {
  const std::string path = write("abl.yaml", std::string(kGood) +
                                                 "rope:\n  original_max_position: 128\n"
                                                 "run:\n  dir: out\nsweep:\n"
                                                 "  data.sequence_length: [512, 1024]\n"
                                                 "  rope.method: [none, linear, yarn]\n"
                                                 "  rope.factor: [2]\n");
  const LoadedRecipe r = load_or_fail(path);
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(r);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 6u);
  const std::vector<std::string> names = {
      "abl-data.sequence_length=512-rope.method=none-rope.factor=2",
      "abl-data.sequence_length=512-rope.method=linear-rope.factor=2",
      "abl-data.sequence_length=512-rope.method=yarn-rope.factor=2",
      "abl-data.sequence_length=1024-rope.method=none-rope.factor=2",
      "abl-data.sequence_length=1024-rope.method=linear-rope.factor=2",
      "abl-data.sequence_length=1024-rope.method=yarn-rope.factor=2"};
  const RopeMethod methods[] = {RopeMethod::kNone, RopeMethod::kLinear, RopeMethod::kYarn};
  for (size_t i = 0; i < 6; ++i) {
    const NamedRun& run = (*runs)[i];
    EXPECT_EQ(run.name, names[i]);
    EXPECT_EQ(run.recipe.proto.data().sequence_length(), i < 3 ? 512 : 1024);
    EXPECT_EQ(run.recipe.rope.method, methods[i % 3]);
    EXPECT_EQ(run.recipe.proto.run().dir(), "out/" + names[i]);
    EXPECT_EQ(run.recipe.proto.sweep_size(), 0);
    ASSERT_EQ(run.values.size(), 3u);
    EXPECT_EQ(run.values[0], std::make_pair(std::string("data.sequence_length"),
                                            std::string(i < 3 ? "512" : "1024")));
    EXPECT_EQ(run.values[2], std::make_pair(std::string("rope.factor"), std::string("2")));
    EXPECT_TRUE(validate(run.recipe.proto).ok());
  }
  // A bad sweep key or value is an error at its line.
  EXPECT_EQ(error_of(std::string(kGood) + "sweep:\n  train.lrr: [1]\n"),
            loc(21, 3) + "unknown key 'train.lrr' (did you mean 'train.lr'?)");
  EXPECT_EQ(error_of(std::string(kGood) + "sweep:\n  train.steps: [1, x]\n"),
            loc(21, 20) + "train.steps: expected an integer, got 'x'");
  // A run that is invalid is named.
  const LoadedRecipe bad = load_or_fail(write("bad.yaml", std::string(kGood) + "sweep:\n  parallel.tp: [1, 3]\n"));
  absl::StatusOr<std::vector<NamedRun>> bad_runs = expand_sweep(bad);
  ASSERT_FALSE(bad_runs.ok());
  EXPECT_EQ(bad_runs.status().message(),
            "sweep run bad-parallel.tp=3: " + (dir_ / "bad.yaml").string() +
                ":21:3: parallel.tp (3) must divide model.num_attention_heads (4)");
  // Without a sweep: one run named by the stem.
  absl::StatusOr<std::vector<NamedRun>> one = expand_sweep(load_or_fail(write("plain.yaml", kGood)));
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].name, "plain");
}

TEST_F(RecipeTest, ResolvedYamlRoundTrips) {
  std::string good = kGood;
  good.replace(good.find("data:\n"), 6, "data:\n  heldout: \"123\"\n");
  const std::string path = write("rt.yaml", good + R"(rope:
  method: longrope
  short_factor: [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5]
  long_factor: [1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 0.1]
  original_max_position: 128
logit_scale:
  kind: log_position
  skip_layers: [0]
run:
  dir: "true"
sweep:
  train.lr: [1.0e-3, 2.0e-3]
)");
  const LoadedRecipe r = load_or_fail(path, {"train.min_lr=0.0001234567890123"});
  const std::string yaml = recipe_to_yaml(r.proto);
  const LoadedRecipe again = load_or_fail(write("rt2.yaml", yaml));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(r.proto, again.proto))
      << yaml << "\n---\n" << recipe_to_yaml(again.proto);
  EXPECT_EQ(again.proto.sweep_size(), 1);
  EXPECT_EQ(again.proto.data().heldout(), "123");
  // A resolved run (no sweep) round-trips too.
  absl::StatusOr<std::vector<NamedRun>> runs = expand_sweep(r);
  ASSERT_TRUE(runs.ok()) << runs.status();
  const LoadedRecipe run = load_or_fail(write("run.yaml", recipe_to_yaml((*runs)[1].recipe.proto)));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals((*runs)[1].recipe.proto, run.proto));
  EXPECT_TRUE(validate(r.proto).ok());
}

}  // namespace
}  // namespace rotor
