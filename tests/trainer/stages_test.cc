// Multi-stage training (trainer/train.h, trainer/data_stream.h): a staged run
// changes length, RoPE and learning rate at the stage boundary, records the
// stage everywhere, restarts each stage's schedule, carries the weights and
// the optimizer over, continues the data without reading a token twice, and
// resumes anywhere (inside a stage or exactly at its boundary) to the
// uninterrupted run's numbers bit for bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/indexed_dataset.h"
#include "trainer/checkpoint.h"
#include "trainer/cli/eval_command.h"
#include "trainer/cli/sweep_command.h"
#include "trainer/cli/train_command.h"
#include "trainer/data_stream.h"
#include "trainer/recipe/recipe.h"
#include "tests/trainer/corpus.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// short: 6 steps at 64 tokens, theta 10000; long: 6 steps at 128 tokens,
// theta 40000, its own learning rate; both warm up over 2 steps.
std::string write_staged_recipe(const std::string& dir, const std::string& corpus) {
  const std::string path = dir + "/staged.yaml";
  std::ofstream(path) << "model: {vocab_size: 260, hidden_size: 32, intermediate_size: 64,\n"
                         "        num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2}\n"
                         "rope: {method: none, theta: 10000}\n"
                         "data: {datasets: [{path: " << corpus << "}], heldout: " << corpus << ",\n"
                         "       sequence_length: 64, document_masking: true}\n"
                         "train: {global_batch_size: 4, micro_batch_size: 2, lr: 1.0e-2,\n"
                         "        min_lr: 1.0e-3, warmup_steps: 2, seed: 5}\n"
                         "checkpoint: {interval: 4}\n"
                         "eval: {interval: 100, lengths: [128]}\n"
                         "stages:\n"
                         "  - {name: short, steps: 6}\n"
                         "  - {name: long, steps: 6, set: {data.sequence_length: 128, rope.theta: 40000,\n"
                         "                                 train.lr: 5.0e-3}}\n";
  return path;
}

TEST(Stages, RunRecordsStagesAndResumesAnywhereBitForBit) {
  const std::string dir = ::testing::TempDir() + "/stages_e2e";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string corpus = testing::write_corpus(dir);
  const std::string recipe = write_staged_recipe(dir, corpus);
  std::ostringstream out, err;
  const std::string run_a = dir + "/a";
  ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_a}, out, err), 0) << err.str();
  const std::vector<nlohmann::json> a = read_metrics(run_a);
  ASSERT_EQ(a.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(a[i]["stage"], i < 6 ? "short" : "long") << a[i].dump();
    EXPECT_EQ(a[i]["sequence_length"], i < 6 ? 64 : 128) << a[i].dump();
  }
  // Each stage's schedule over its own steps: warmup 1/2, 2/2, cosine down
  // to min_lr at the stage's last step.
  EXPECT_DOUBLE_EQ(a[0]["lr"].get<double>(), 0.5e-2);
  EXPECT_DOUBLE_EQ(a[1]["lr"].get<double>(), 1e-2);
  EXPECT_DOUBLE_EQ(a[5]["lr"].get<double>(), 1e-3);
  EXPECT_DOUBLE_EQ(a[6]["lr"].get<double>(), 2.5e-3);
  EXPECT_DOUBLE_EQ(a[7]["lr"].get<double>(), 5e-3);
  EXPECT_DOUBLE_EQ(a[11]["lr"].get<double>(), 1e-3);
  // Evaluated at each stage's end (eval.interval is past both).
  EXPECT_TRUE(a[5].contains("eval_loss_128"));
  EXPECT_TRUE(a[11].contains("eval_loss_128"));
  EXPECT_FALSE(a[6].contains("eval_loss_128"));
  // The optimizer carried over: the first long step is not a fresh start
  // (its loss is the trained model's, below the first step's).
  EXPECT_LT(a[6]["loss"].get<double>(), a[0]["loss"].get<double>() - 0.5);
  const std::string o = out.str();
  EXPECT_NE(o.find("stage short (1 of 2): steps 1-6, sequence length 64"), std::string::npos) << o;
  EXPECT_NE(o.find("stage long (2 of 2): steps 7-12, sequence length 128"), std::string::npos) << o;
  EXPECT_NE(o.find("step 7/12 | stage long | loss"), std::string::npos) << o;
  // Checkpoints at 4, 8 (interval), 6 and 12 (stage ends); each names its
  // stage and holds that stage's recipe (the weights' RoPE and length).
  const fs::path ck = fs::path(run_a) / "checkpoints";
  for (int s : {4, 6, 8, 12}) EXPECT_TRUE(fs::exists(checkpoint_dir(run_a, s))) << s;
  const nlohmann::json state6 = nlohmann::json::parse(read(ck / "step_00000006" / "state.json"));
  EXPECT_EQ(state6["sampler"]["stage"], "short");
  EXPECT_EQ(state6["sampler"]["stage_step"], 6);
  EXPECT_EQ(state6["sampler"]["next_sample"], 24);
  const nlohmann::json state8 = nlohmann::json::parse(read(ck / "step_00000008" / "state.json"));
  EXPECT_EQ(state8["sampler"]["stage"], "long");
  EXPECT_EQ(state8["sampler"]["stage_index"], 1);
  EXPECT_EQ(state8["sampler"]["stage_step"], 2);
  absl::StatusOr<LoadedRecipe> r6 = load_recipe((ck / "step_00000006" / "recipe.yaml").string(), {}, RecipeMode::kModel);
  absl::StatusOr<LoadedRecipe> r12 = load_recipe((ck / "step_00000012" / "recipe.yaml").string(), {}, RecipeMode::kModel);
  ASSERT_TRUE(r6.ok() && r12.ok());
  EXPECT_EQ(r6->rope.theta, 10000.0);
  EXPECT_EQ(r12->rope.theta, 40000.0);
  EXPECT_EQ(r12->proto.data().sequence_length(), 128);
  EXPECT_TRUE(r12->stages.empty());
  // The run directory's recipe.yaml is the staged recipe itself.
  absl::StatusOr<LoadedRecipe> top = load_recipe(run_a + "/recipe.yaml", {});
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->stages.size(), 2u);

  // Evaluating the run (its staged recipe.yaml) uses the settings of the
  // stage that saved the checkpoint: the same numbers as the checkpoint's own
  // recipe, and not those of the recipe's top level (theta 10000).
  {
    const std::string ck12 = checkpoint_dir(run_a, 12);
    const auto ppl = [&](std::vector<std::string> args, const std::string& name) {
      const std::string out_dir = dir + "/eval_" + name;
      args.insert(args.begin(), "ppl");
      args.insert(args.end(), {"--checkpoint", ck12, "--out", out_dir});
      std::ostringstream eval_out, eval_err;
      EXPECT_EQ(run_eval_command(args, eval_out, eval_err), 0) << eval_err.str();
      return read(fs::path(out_dir) / "ppl.csv");
    };
    const std::string staged = ppl({run_a + "/recipe.yaml"}, "staged");
    const std::string own = ppl({ck12 + "/recipe.yaml"}, "own");
    const std::string top = ppl({ck12 + "/recipe.yaml", "--set", "rope.theta=10000"}, "top");
    EXPECT_FALSE(staged.empty());
    EXPECT_EQ(staged, own);
    EXPECT_NE(staged, top) << "theta 10000 scores the long stage's weights differently";
  }

  // Killed after step 4 (inside short), 6 (the boundary) or 8 (inside long):
  // the resumed run gives the same numbers bit for bit.
  for (int killed : {4, 6, 8}) {
    SCOPED_TRACE(killed);
    const std::string run_b = dir + "/b" + std::to_string(killed);
    fs::remove_all(run_b);
    fs::copy(run_a, run_b, fs::copy_options::recursive);
    for (int s : {4, 6, 8, 12})
      if (s > killed) fs::remove_all(checkpoint_dir(run_b, s));
    std::ofstream(run_b + "/checkpoints/latest") << "step_0000000" << killed << "\n";
    std::ostringstream out2;
    ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_b}, out2, err), 0) << err.str();
    EXPECT_NE(out2.str().find("resumed from"), std::string::npos) << out2.str();
    EXPECT_NE(out2.str().find(killed < 6 ? "stage short (1 of 2)" : "stage long (2 of 2)"), std::string::npos)
        << out2.str();
    const std::vector<nlohmann::json> b = read_metrics(run_b);
    ASSERT_EQ(b.size(), 12u);
    for (size_t i = 0; i < 12; ++i) {
      EXPECT_EQ(b[i]["loss"].get<double>(), a[i]["loss"].get<double>()) << "step " << i + 1;
      EXPECT_EQ(b[i]["grad_norm"].get<double>(), a[i]["grad_norm"].get<double>()) << "step " << i + 1;
      EXPECT_EQ(b[i]["stage"], a[i]["stage"]);
    }
  }
  // The newest checkpoints (8, inside long, and 6, the boundary) corrupt: the
  // resume falls back to step 4, inside short, builds that stage instead and
  // still ends with the uninterrupted run's numbers.
  {
    const std::string run_c = dir + "/corrupt";
    fs::remove_all(run_c);
    fs::copy(run_a, run_c, fs::copy_options::recursive);
    fs::remove_all(checkpoint_dir(run_c, 12));
    for (int s : {6, 8}) {
      std::fstream f(checkpoint_dir(run_c, s) + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-5, std::ios::end);
      f.put('\x5a');
    }
    std::ofstream(run_c + "/checkpoints/latest") << "step_00000008\n";
    std::ostringstream out3;
    ASSERT_EQ(run_train_command({recipe, "--set", "run.dir=" + run_c}, out3, err), 0) << err.str();
    EXPECT_NE(out3.str().find("step_00000008 is unusable"), std::string::npos) << out3.str();
    EXPECT_NE(out3.str().find("resumed from " + checkpoint_dir(run_c, 4)), std::string::npos) << out3.str();
    const std::vector<nlohmann::json> c = read_metrics(run_c);
    ASSERT_EQ(c.size(), 12u);
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(c[i]["loss"].get<double>(), a[i]["loss"].get<double>()) << i + 1;
  }
  // --memory plans every stage: the long stage's step (about 1.8 MB) does
  // not fit 1.5 MB, the short one's (1.2 MB) would; refused before training.
  {
    std::ostringstream mem_out, mem_err;
    EXPECT_EQ(run_train_command({recipe, "--set", "run.dir=" + dir + "/memory", "--memory", "1500000"}, mem_out,
                                mem_err),
              2);
    EXPECT_NE(mem_err.str().find("rotor train: stage long: the step does not fit --memory"), std::string::npos)
        << mem_err.str();
    EXPECT_FALSE(fs::exists(dir + "/memory/metrics.jsonl"));
  }
  // A staged recipe through rotor sweep: a sweep of the long stage's length.
  const std::string swept = dir + "/swept.yaml";
  std::ofstream(swept) << read(recipe) << "sweep: {stages.long.data.sequence_length: [64, 128]}\n";
  std::ostringstream sweep_out;
  ASSERT_EQ(run_sweep_command({swept, "--set", "run.dir=" + dir + "/sweep", "--set", "stages.short.steps=1",
                               "--set", "stages.long.steps=1", "--set", "train.warmup_steps=0", "--run"},
                              sweep_out, err),
            0)
      << err.str();
  for (int len : {64, 128}) {
    const std::vector<nlohmann::json> m =
        read_metrics(dir + "/sweep/swept-stages.long.data.sequence_length=" + std::to_string(len));
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[1]["stage"], "long");
    EXPECT_EQ(m[1]["sequence_length"], len);
  }
}

// A dataset whose token i of the stream is i (one document, unique ids): a
// sample's ids say which stream tokens it read.
std::string write_counting_dataset(const std::string& dir, int64_t tokens) {
  const std::string prefix = dir + "/counting";
  auto w = IndexedDatasetWriter::create(prefix, TokenDType::kInt32);
  EXPECT_TRUE(w.ok()) << w.status();
  std::vector<int64_t> ids(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) ids[static_cast<size_t>(i)] = i;
  EXPECT_TRUE(w->add_sequence(ids).ok());
  w->end_document();
  EXPECT_TRUE(w->finalize().ok());
  return prefix;
}

// Stages at 64, 128 and 32 tokens (with a second dataset entering in the
// third): every stage goes on where the previous left the dataset, and no
// stream token is read twice within the epoch.
TEST(Stages, DataGoesOnWithoutReadingATokenTwice) {
  const std::string dir = ::testing::TempDir() + "/stages_data";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string counting = write_counting_dataset(dir, 128 * 100 + 1);  // 100 blocks of 128
  const std::string corpus = testing::write_corpus(dir);
  // The model, one dataset at 64 tokens, 3 sequences a step; plain.yaml adds
  // train.steps, r.yaml stages.
  const std::string head = "model: {vocab_size: 20000, hidden_size: 32, intermediate_size: 64,\n"
                           "        num_hidden_layers: 1, num_attention_heads: 4}\n"
                           "data: {datasets: [{path: " + counting + "}], sequence_length: 64}\n"
                           "train: {global_batch_size: 3, lr: 1.0e-3, seed: 9}\n";
  const std::string path = dir + "/r.yaml";
  std::ofstream(path) << head << "stages:\n"
                         "  - {name: a, steps: 5}\n"
                         "  - {name: b, steps: 4, set: {data.sequence_length: 128}}\n"
                         "  - {name: c, steps: 7, set: {data.sequence_length: 32, data.datasets: [{path: "
                      << corpus << "}, {path: " << counting << ", weight: 3}]}}\n";
  absl::StatusOr<LoadedRecipe> r = load_recipe(path, {});
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<std::vector<std::vector<DatasetStart>>> starts = stage_data_starts(r->stages);
  ASSERT_TRUE(starts.ok()) << starts.status();
  // B = lcm(64, 128, 32) = 128 for the counting dataset: a 15 x 64 stage reads
  // 7.5 blocks and the next starts at block 8 (sample 8 at 128, 32 at 32).
  EXPECT_EQ((*starts)[0][0].block_length, 128);
  EXPECT_EQ((*starts)[0][0].first_sample, 0);
  EXPECT_EQ((*starts)[1][0].first_sample, 8);
  EXPECT_EQ((*starts)[2][1].first_sample, (8 + 12) * 4);
  EXPECT_EQ((*starts)[2][1].seed, (*starts)[0][0].seed) << "a dataset keeps its shuffle";
  EXPECT_EQ((*starts)[2][0].first_sample, 0) << "the corpus enters in stage c";
  EXPECT_EQ((*starts)[0][0].seed, 9u);
  std::set<int32_t> seen;
  int64_t read_tokens = 0;
  for (size_t k = 0; k < r->stages.size(); ++k) {
    const LoadedStage& stage = r->stages[k];
    absl::StatusOr<DataStream> stream = open_stream(stage.recipe.proto, (*starts)[k]);
    ASSERT_TRUE(stream.ok()) << stream.status();
    const int64_t samples = stage.steps * 3;
    for (int64_t i = 0; i < samples; ++i) {
      absl::StatusOr<PackedSample> s = stream->sample(i);
      ASSERT_TRUE(s.ok()) << s.status();
      if (s->ids[0] > 256 || (k < 2)) {  // the counting dataset (the corpus holds bytes and 257)
        for (int32_t id : s->ids) {
          EXPECT_TRUE(seen.insert(id).second) << "stage " << stage.name << " sample " << i << " rereads token " << id;
          ++read_tokens;
        }
      }
    }
  }
  EXPECT_GT(read_tokens, 15 * 64 + 12 * 128) << "stage c read the counting dataset too";
  // Without stages the stream is the one a single-stage recipe always had.
  const std::string plain_path = dir + "/plain.yaml";
  std::ofstream(plain_path) << head;
  absl::StatusOr<LoadedRecipe> plain = load_recipe(plain_path, {"train.steps=3"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  absl::StatusOr<std::vector<std::vector<DatasetStart>>> one = stage_data_starts(training_stages(*plain));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)[0][0].block_length, 64);
  absl::StatusOr<DataStream> s1 = open_stream(plain->proto);
  absl::StatusOr<DataStream> s2 = open_stream(plain->proto, (*one)[0]);
  ASSERT_TRUE(s1.ok() && s2.ok());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(s1->sample(i)->ids, s2->sample(i)->ids) << i;
}

}  // namespace
}  // namespace rotor
